"""Learning from the person: feedback → dataset → LoRA → evaluate in the engine → promote (docs/learn.md).

Heavy dependencies (torch, transformers, peft, gguf) are imported inside the
functions that need them: ``import shoal.learn`` stays light.
"""
