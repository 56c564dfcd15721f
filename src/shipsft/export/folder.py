"""Every file name of an export, spelled once.

    <run>/export/                  (output.export.dir / --out)
      export.json                  what was written, the settings, sizes, timings and the parity check's findings
      hf/                          the Hugging Face folder (hf.py), with README.md (the model card)
      gguf/<run>-<type>.gguf       the GGUF file (convert.py: llama.cpp's converter), with Modelfile (Ollama) and
                                   README.md
      serve_requests.jsonl         the vLLM serve check's requests (serve.py), serve_check.json its result
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ExportFolder:
    root: Path

    @property
    def record(self) -> Path:
        return self.root / "export.json"

    @property
    def hf(self) -> Path:
        return self.root / "hf"

    @property
    def gguf_dir(self) -> Path:
        return self.root / "gguf"

    def gguf_file(self, name: str, qtype: str) -> Path:
        return self.gguf_dir / f"{name}-{qtype}.gguf"

    def find_gguf(self) -> Path | None:
        found = sorted(self.gguf_dir.glob("*.gguf")) if self.gguf_dir.is_dir() else []
        return found[0] if found else None

    @property
    def modelfile(self) -> Path:
        return self.gguf_dir / "Modelfile"

    @property
    def serve_requests(self) -> Path:
        return self.root / "serve_requests.jsonl"

    @property
    def serve_result(self) -> Path:
        return self.root / "serve_check.json"

    def has_hf(self) -> bool:
        return (self.hf / "config.json").exists()
