"""A loopback fake model provider speaking the OpenAI, Anthropic and Gemini wire formats."""
