"""prompt-library: team-shared prompt templates with variables, a plugin of the LLM portal."""
