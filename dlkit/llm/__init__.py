"""`dlkit llm`: fine-tune causal language models with every PEFT method, evaluate, generate, export and compose."""
