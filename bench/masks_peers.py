"""The contenders of the mask bench, each through its public API, each returning an `Outcome` per conversation.

- shipsft: its data path as `shipsft train` runs it: a JSONL file -> `pipeline.prepare` (formats, render, template
  and stop checks) -> the rendered sequences (ids, mask).
- trl_assistant_only: TRL's `SFTTrainer` with `assistant_only_loss=True` on a messages dataset (TRL swaps in its
  training template with `{% generation %}` markers, or refuses); the trained tokens are the labels it prepares.
- trl_completion_only: `SFTTrainer` with `completion_only_loss=True` on a prompt/completion dataset (prompt: every
  message before the last answer; completion: the last answer), scored on the last turn only.
- transformers: `apply_chat_template(return_assistant_tokens_mask=True)` with the template that carries
  `{% generation %}` markers (the model's own if it has them, else TRL's training version of it, else the own one).

An error the tool raises on purpose (shipsft's ShipError; a ValueError/RuntimeError raised from the tool's own code;
a template's raise_exception) counts as a refusal; any other exception is a crash.
"""
from __future__ import annotations

import json
import os
import tempfile
import traceback
from pathlib import Path
from typing import Callable

from masks_oracle import CRASHED, REFUSED, Outcome

Case = tuple[str, list[dict], list | None]  # (kind, messages, tools)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def classify(e: BaseException, package_dir: str) -> Outcome:
    """A refusal when the tool (or the template's raise_exception) raised it on purpose, else a crash."""
    import jinja2

    if type(e) is jinja2.exceptions.TemplateError:  # raise_exception() inside the template
        return Outcome(REFUSED, message="template: " + _first_line(e))
    frames = traceback.extract_tb(e.__traceback__)
    raised_in = frames[-1].filename if frames else ""
    if isinstance(e, (ValueError, RuntimeError, NotImplementedError)) and package_dir in raised_in:
        return Outcome(REFUSED, message=_first_line(e))
    return Outcome(CRASHED, message=_first_line(e))


# ------------------------------------------------------------------------------------------------------------
# shipsft


def run_shipsft(tok, cases: list[Case], kwargs: dict) -> dict[str, Outcome]:
    """All conversations of a template in one JSONL file, prepared as `shipsft train` prepares its data. A refusal
    names the examples it refuses ("file:line"): those get it, and the file is prepared again without them; a
    refusal that names none (a template that cannot teach the model to stop) is every remaining conversation's."""
    before = os.environ.get("SHIPSFT_NO_CACHE")
    os.environ["SHIPSFT_NO_CACHE"] = "1"  # score the code, never a rendered-data cache of an earlier build
    try:
        return _prepare_each(tok, cases, kwargs)
    finally:  # restored: a test run goes on with the cache as it was
        if before is None:
            del os.environ["SHIPSFT_NO_CACHE"]
        else:
            os.environ["SHIPSFT_NO_CACHE"] = before


def _prepare_each(tok, cases: list[Case], kwargs: dict) -> dict[str, Outcome]:
    import re

    from shipsft.config import DataConfig
    from shipsft.data.pipeline import prepare
    from shipsft.errors import ShipError

    out: dict[str, Outcome] = {}
    remaining = list(cases)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "conversations.jsonl"
        while remaining:
            path.write_text("".join(json.dumps({"messages": m, **({"tools": t} if t else {})}, ensure_ascii=False)
                                    + "\n" for _, m, t in remaining))
            try:
                prep = prepare(DataConfig(train=[str(path)], template_kwargs=kwargs), tok, "train", strict=True,
                               rejects_path=None)
            except ShipError as e:
                named: dict[int, list[str]] = {}
                for line in e.lines:
                    for n in re.findall(re.escape(str(path)) + r":(\d+)", line):
                        named.setdefault(int(n) - 1, []).append(line.replace(str(path), "data.jsonl"))
                if not named:
                    out.update({k: Outcome(REFUSED, message=" ".join(e.lines)) for k, _, _ in remaining})
                    break
                general = [line for line in e.lines if str(path) not in line]  # the closing line with the fix
                for i, lines in named.items():
                    out[remaining[i][0]] = Outcome(REFUSED, message=" ".join(lines + general))
                remaining = [c for i, c in enumerate(remaining) if i not in named]
                continue
            except Exception as e:  # noqa: BLE001 - anything else is a crash, reported as such
                out.update({k: Outcome(CRASHED, message=_first_line(e)) for k, _, _ in remaining})
                break
            by_line: dict[int, list] = {}
            for r in prep.rendered:
                by_line.setdefault(int(r.source.rsplit(":", 1)[1]) - 1, []).append((list(r.ids), list(r.mask)))
            out.update({k: Outcome("output", by_line.get(i, [])) for i, (k, _, _) in enumerate(remaining)})
            break
    return out


# ------------------------------------------------------------------------------------------------------------
# TRL


def _tiny_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    # never run: SFTTrainer needs a model to build; its data preparation does not depend on it
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                                        num_attention_heads=1, num_key_value_heads=1))


def _trl_rows(cases: list[Case], completion: bool, kwargs: dict) -> list[dict]:
    rows = []
    for _, messages, tools in cases:
        # tools as a JSON string (TRL parses it): datasets would otherwise unify the rows' schemas with None-filled
        # keys; template kwargs (Llama 3.2's date_string) go in the column TRL reads them from
        extra = {"tools": json.dumps(tools) if tools else None, **({"chat_template_kwargs": kwargs} if kwargs else {})}
        if completion:
            last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
            rows.append({"prompt": messages[:last], "completion": messages[last:], **extra})
        else:
            rows.append({"messages": messages, **extra})
    return rows


def _trl_prepare(tok, rows: list[dict], completion: bool, workdir: str):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=workdir, report_to=[], max_length=None, use_cpu=True, save_strategy="no",
                     assistant_only_loss=not completion, completion_only_loss=True if completion else None)
    trainer = SFTTrainer(model=_tiny_model(), args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    return [(list(x["input_ids"]), [lab != -100 for lab in x["labels"]]) for x in trainer.train_dataset]


def run_trl(tok, cases: list[Case], kwargs: dict, completion: bool) -> dict[str, Outcome]:
    """One SFTTrainer over every conversation of the template; when that raises, one per conversation so that each
    gets its own verdict."""
    import trl

    pkg = os.path.dirname(trl.__file__)
    out: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory() as d:
        try:
            seqs = _trl_prepare(tok, _trl_rows(cases, completion, kwargs), completion, d)
            return {kind: Outcome("output", [s]) for (kind, _, _), s in zip(cases, seqs)}
        except Exception:  # noqa: BLE001 - attributed case by case below
            pass
        for case in cases:
            try:
                [s] = _trl_prepare(tok, _trl_rows([case], completion, kwargs), completion, d)
                out[case[0]] = Outcome("output", [s])
            except Exception as e:  # noqa: BLE001
                out[case[0]] = classify(e, pkg)
    return out


# ------------------------------------------------------------------------------------------------------------
# transformers


def generation_template(tok) -> tuple[str, str]:
    """(template with {% generation %} markers if one can be had, where it came from)."""
    import re

    own = tok.chat_template
    if re.search(r"\{%-?\s*generation\s*-?%\}", own):
        return own, "own"
    try:
        from trl.chat_template_utils import get_training_chat_template

        patched = get_training_chat_template(tok)
        if patched:
            return patched, "trl training template"
    except Exception:  # noqa: BLE001 - TRL knows no training version of this template
        pass
    return own, "own (no generation markers)"


def run_transformers(tok, cases: list[Case], kwargs: dict) -> dict[str, Outcome]:
    import transformers

    pkg = os.path.dirname(transformers.__file__)
    template, _ = generation_template(tok)
    out = {}
    for kind, messages, tools in cases:
        try:
            enc = tok.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=True,
                                          return_assistant_tokens_mask=True, chat_template=template, **kwargs)
            out[kind] = Outcome("output", [(list(enc["input_ids"]), [bool(m) for m in enc["assistant_masks"]])])
        except Exception as e:  # noqa: BLE001
            out[kind] = classify(e, pkg)
    return out


CONTENDERS: dict[str, tuple[Callable, str]] = {
    "shipsft": (run_shipsft, "all"),
    "trl_assistant_only": (lambda tok, cases, kw: run_trl(tok, cases, kw, completion=False), "all"),
    "trl_completion_only": (lambda tok, cases, kw: run_trl(tok, cases, kw, completion=True), "last"),
    "transformers": (run_transformers, "all"),
}

# peers whose mask code could not be imported on this CPU machine, and why (pip's resolver, 2026-12-07, Python 3.11)
NOT_SCORED = {
    "axolotl": "axolotl 0.20/0.21 require Python >= 3.12 (this bench's venv is 3.11), and every older release pins "
               "its own torch/transformers, which would replace the CPU torch 2.13.0 the project installs",
    "LLaMA-Factory": "llamafactory 0.9.5 (PyPI) resolves to the CUDA 13 torch wheels (nvidia-* packages, several GB) "
                     "and datasets 4.0.0 in place of this venv's; its v1 prefix-stable renderer is only on its main "
                     "branch, not on PyPI",
    "Oumi": "oumi resolves to CUDA 12 wheels and other pins of datasets/transformers in place of this venv's",
}
