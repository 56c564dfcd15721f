"""model/: locate weights (a Hugging Face folder, a GGUF file, the embedded SmolLM2, a hub id resolved by `hub` to
its cached snapshot with huggingface_hub), load them, make them trainable (LoRA / QLoRA / full), pick the precision,
and save what was trained.

Functions take the config section they need (`ModelConfig`, `MethodConfig`, `TrainConfig.precision`), never the
whole run config. May import: `shipsft.config`, `shipsft.errors` (tests/test_architecture.py).
"""
