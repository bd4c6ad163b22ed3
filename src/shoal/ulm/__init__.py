"""µLMs: tiny transformers trained from scratch here, served by the engine, solving by search (docs/ulm.md)."""
