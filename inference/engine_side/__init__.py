"""Scripts that run inside the engine's virtual environment (.venv-engine), never in the portal.

The portal starts them as separate processes with the engine's Python; it never imports
them, so torch and transformers stay out of the web and supervisor processes.
"""
