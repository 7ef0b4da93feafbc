"""pii-guard: keeps personal data in prompts from reaching the model, a plugin of the LLM portal."""
