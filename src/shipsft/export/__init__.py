"""export/: hand a run off so that it serves exactly as it was trained, and prove it.

    source.py        a run folder -> its config, shipped weights, training template and end-of-turn ids
    merge.py         LoRA/DoRA merged into the fp32 base (QLoRA: into the de-quantised NF4 base), tied embeddings
                     untied when training changed one of them
    hf.py            the standard Hugging Face folder: sharded safetensors, config, tokenizer with the training
                     template, generation_config.json whose eos ids include the end-of-turn token
    llamacpp.py      llama.cpp itself, pinned (node-llama-cpp from npm: its source bundle and prebuilt binaries),
                     installed once into the cache
    convert.py       one GGUF file from an fp32 HF folder: llama.cpp's convert_hf_to_gguf.py (+ quantize.py)
    quantize.py      llama.cpp's quantizer (llama_model_quantize from the prebuilt libllama): K-quants and others
    engine.py        llama.cpp running a GGUF (engine.mjs in node): tokenisation, greedy answers, teacher forcing
    modelfile.py     an Ollama Modelfile whose TEMPLATE is derived from the trained template (and checked)
    card.py          the model card README.md written into every export
    parity.py        the train/serve parity check (template bytes, stop ids, greedy generation, the GGUF in llama.cpp)
    run.py           `export_run`: merge -> write -> card -> check, into <run>/export (atomic folder writes)
    serve.py         the vLLM serve check: requests from the run's eval prompts, bench/serve_check.py as a subprocess
    chat.py          a chat session on a run or a model: the trained template, streaming greedy tokens, stop ids
    hub.py           `--push-to-hub`: the HF export (or the adapter alone) uploaded in one commit with huggingface_hub

Functions take the config section they need (`ExportConfig`, `ModelConfig`, `MethodConfig`, `DataConfig`), never
the whole run config, except where a run folder's own config is read back. Writes only under the export folder.

May import: `shipsft.config`, `shipsft.errors`, `shipsft.data`, `shipsft.model`, `shipsft.eval`, `shipsft.runs`;
never train/ (train/run.py calls `export_run` at the end of training) or cli/ (tests/test_architecture.py).
"""
