"""Pure arithmetic of LLM inference: model size, KV cache, FLOPs and roofline ceilings.

Nothing here imports the rest of infermon or does I/O, except the loaders in
``infermon.model.loaders``, which read the config file they are handed.
"""
