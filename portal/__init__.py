"""The LLM team portal: project package and core app."""

__version__ = "0.1.0"
