"""Template audit checks: the rendered training data against the tokenizer and its own chat template.

A model trained on a subtly wrong chat template still learns, and its loss curve looks fine; it just loses the
format and behaviour the base model had, and serving it with its own template then mismatches training. These
checks make that visible before the first step:

- parity: a sample of examples re-rendered with `tokenizer.apply_chat_template` (text and ids) equals what we train on;
- prefix stability: how many examples had to be split into one sequence per assistant turn;
- end-of-turn trained: every trained assistant span ends with a special token (the model learns to stop);
- role markers: the template's markers (`<|im_start|>`, `[INST]`, ...) are single tokens of this vocabulary;
- double BOS, and `pad == eos` with EOS still trained (failure mode 10);
- the chat template saved with the model renders the training data byte-identically (failure mode 14).

    from shipsft.audit.template import check_template
    findings, stats = check_template(tok, examples, rendered, template_source=None, template_kwargs={})
"""
from __future__ import annotations

import itertools
import re
import tempfile
from typing import Any

import numpy as np

from shipsft.audit.findings import Finding

# Marker-looking pieces of a template's scaffolding: <|im_start|>, <start_of_turn>, </s>, [INST], [/INST] ...
_MARKER = re.compile(r"<\|[^|<>\s]{1,40}\|>|</?[a-z_][a-z0-9_]{0,30}>|\[/?[A-Z][A-Z_]{1,20}\]")
_PROBE = [
    {"role": "system", "content": "QZXSYSTEMQZX"},
    {"role": "user", "content": "QZXUSERONEQZX"},
    {"role": "assistant", "content": "QZXANSWERONEQZX"},
    {"role": "user", "content": "QZXUSERTWOQZX"},
    {"role": "assistant", "content": "QZXANSWERTWOQZX"},
]


def special_ids(tokenizer) -> set[int]:
    ids = set(tokenizer.all_special_ids)
    ids |= {i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(t, "special", False)}
    return ids


def flatten(rendered: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All sequences' ids and masks concatenated (one numpy pass instead of a Python loop per token)."""
    lens = np.fromiter((len(r.ids) for r in rendered), dtype=np.int64, count=len(rendered))
    offsets = np.r_[0, np.cumsum(lens)].astype(np.int64)
    total = int(offsets[-1])
    ids = np.fromiter(itertools.chain.from_iterable(r.ids for r in rendered), dtype=np.int64, count=total)
    mask = np.fromiter(itertools.chain.from_iterable(r.mask for r in rendered), dtype=bool, count=total)
    return ids, mask, offsets


def span_ends(mask: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the last token of every trained run, and the sequence each belongs to."""
    nxt = np.r_[mask[1:], False]
    if len(offsets) > 1:
        last = offsets[1:] - 1
        nxt[last[last >= 0]] = False
    ends = np.flatnonzero(mask & ~nxt)
    return ends, np.searchsorted(offsets, ends, side="right") - 1


def _policy_messages(ex, system_message: str) -> list[dict]:
    from shipsft.data.render import apply_system_policy  # the renderer's own policy, so we compare like for like

    return apply_system_policy(ex.messages or [], system_message)


def _expected_text(tokenizer, ex, turn: int | None, template_source: str | None, kwargs: dict,
                   system_message: str) -> str:
    msgs = _policy_messages(ex, system_message)
    if turn is not None:
        msgs = msgs[: turn + 1]
    kwargs = dict(kwargs)
    tools = ex.tools if ex.tools is not None else kwargs.pop("tools", None)  # as ChatTemplate.render_prepared
    return tokenizer.apply_chat_template(msgs, tokenize=False, chat_template=template_source, tools=tools, **kwargs)


def _first_diff(a: str, b: str) -> int:
    return next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _sample(rendered: list, by_source: dict, n: int, seed: int) -> list[int]:
    chat = [i for i, r in enumerate(rendered) if by_source.get(r.source) is not None
            and by_source[r.source].kind == "chat"]
    if len(chat) <= n:
        return chat
    return sorted(np.random.default_rng(seed).choice(chat, size=n, replace=False).tolist())


def check_parity(tokenizer, examples: list, rendered: list, template_source: str | None = None,
                 template_kwargs: dict | None = None, system_message: str = "keep", sample: int = 64,
                 seed: int = 0) -> tuple[list[Finding], dict]:
    """Re-render a sample with `tokenizer.apply_chat_template` and compare text and token ids byte for byte."""
    by_source = {ex.source: ex for ex in examples}
    picked = _sample(rendered, by_source, sample, seed)
    text_bad, ids_bad, first = [], [], None
    for i in picked:
        r = rendered[i]
        ex = by_source[r.source]
        want = _expected_text(tokenizer, ex, r.turn, template_source, template_kwargs or {}, system_message)
        if r.text != want:
            text_bad.append(r.source)
            if first is None:
                k = _first_diff(r.text, want)
                first = {"source": r.source, "at": k, "trained_on": r.text[max(0, k - 30):k + 40],
                         "template_gives": want[max(0, k - 30):k + 40]}
            continue
        want_ids = tokenizer(want, add_special_tokens=False)["input_ids"]
        have = list(r.ids)
        if (have != want_ids) if not r.truncated else (have != want_ids[: len(have)]):
            ids_bad.append(r.source)
    findings = []
    orphans = [r.source for r in rendered if r.source not in by_source]
    if orphans:  # parity could not even be sampled for these: never let a check pass by skipping them
        findings.append(Finding(
            "template.sources", "error",
            f"{len(orphans)} rendered sequence(s) name a source that is not among the loaded examples (a stale "
            "rendered-data cache or a renderer bug): the audit cannot tie their tokens to their text.",
            fix="clear the cache (~/.cache/shipsft/prepared, or SHIPSFT_NO_CACHE=1) and re-run", examples=orphans))
    if text_bad:
        findings.append(Finding(
            "template.parity", "error",
            f"{len(text_bad)} of {len(picked)} sampled examples are not rendered as the tokenizer's chat template "
            f"renders them (first difference in {first['source']} at character {first['at']}: training text "
            f"{first['trained_on']!r} vs template {first['template_gives']!r}). Training on a guessed format "
            "silently degrades the model.",
            fix="render with the model's own template (leave data.template unset) or fix the custom template; "
                "`shipsft preview CONFIG` shows both", examples=text_bad, data={"first": first}))
    if ids_bad:
        findings.append(Finding(
            "template.token_parity", "error",
            f"{len(ids_bad)} of {len(picked)} sampled examples have the right text but token ids that differ from "
            "tokenising that text as apply_chat_template does (add_special_tokens=False): an added BOS/EOS or a "
            "piecewise tokenisation crept in.",
            fix="tokenise the whole rendered text once with add_special_tokens=False", examples=ids_bad))
    return findings, {"sampled": len(picked), "text_mismatch": len(text_bad), "ids_mismatch": len(ids_bad)}


def check_prefix_stability(rendered: list) -> tuple[list[Finding], dict]:
    split = [r for r in rendered if r.turn is not None]
    n_examples = len({r.source for r in split})
    stats = {"split_sequences": len(split), "split_examples": n_examples}
    if not split:
        return [], stats
    extra = sum(r.n_prompt_tokens for r in split)
    return [Finding(
        "template.prefix_unstable", "info",
        f"the chat template is not prefix-stable (it rewrites earlier turns, e.g. drops earlier reasoning or moves "
        f"the system message): {n_examples} example(s) became {len(split)} sequences, one per assistant turn, each "
        f"exactly what the model sees when answering that turn. Costs {extra:,} prompt tokens re-read.",
        fix="nothing to fix; use single-turn data or data.mask: last_assistant to avoid the extra compute",
        examples=sorted({r.source for r in split}), data=stats)], stats


def check_eot(tokenizer, rendered: list, kinds: list[str] | None = None, mode: str = "all_assistant",
              train_eot: bool = True, flat: tuple | None = None) -> tuple[list[Finding], dict]:
    """Every trained span (assistant turn / completion) must end with a special token: EOS/EOT is learned."""
    if mode == "everything" or not rendered:
        return [], {"spans": 0, "spans_without_eot": 0}
    ids, mask, offsets = flat if flat is not None else flatten(rendered)
    ends, seq = span_ends(mask, offsets)
    include = np.array([not r.truncated and (kinds is None or kinds[i] in ("chat", "completion_text"))
                        for i, r in enumerate(rendered)], dtype=bool)
    keep = include[seq] if len(seq) else np.zeros(0, dtype=bool)
    ends, seq = ends[keep], seq[keep]
    sp = np.fromiter(special_ids(tokenizer), dtype=np.int64)
    ok = np.isin(ids[ends], sp)
    bad = sorted({rendered[s].source for s in seq[~ok].tolist()})
    eot_ids = ids[ends[ok]]
    stats = {"spans": len(ends), "spans_without_eot": int((~ok).sum()),
             "eot_tokens": {tokenizer.convert_ids_to_tokens(int(t)): int(c)
                            for t, c in zip(*np.unique(eot_ids, return_counts=True))}}
    if not bad:
        return [], stats
    if not train_eot:
        return [Finding(
            "template.eot_not_trained", "warning",
            f"data.train_eot is false: {int((~ok).sum())} trained span(s) end without their end-of-turn token, so "
            "the model is never taught to stop and will run on past its answer.",
            fix="--set data.train_eot=true (the default)", examples=bad, data=stats)], stats
    return [Finding(
        "template.eot_not_trained", "error",
        f"{int((~ok).sum())} trained assistant span(s) in {len(bad)} sequence(s) do not end with a special "
        "end-of-turn token (EOS / <|im_end|> / <|eot_id|> ...): the model never learns to stop.",
        fix="make the mask include the end-of-turn marker (data.train_eot: true) and check that the template emits "
            "one after each assistant turn", examples=bad, data=stats)], stats


def template_markers(tokenizer, template_source: str | None, template_kwargs: dict | None = None) -> list[str]:
    """Marker-looking strings of the template's scaffolding (the text around a probe conversation's contents)."""
    text = None
    for msgs in (_PROBE, _PROBE[1:]):  # some templates refuse a system message
        try:
            text = tokenizer.apply_chat_template(msgs, tokenize=False, chat_template=template_source,
                                                 **(template_kwargs or {}))
            break
        except Exception:  # noqa: BLE001 - Jinja raise_exception; the parity check reports template failures
            continue
    if text is None:
        return []
    for m in _PROBE:
        text = text.replace(m["content"], "\x00")
    return sorted(set(_MARKER.findall(text)))


def check_role_markers(tokenizer, template_source: str | None = None, template_kwargs: dict | None = None
                       ) -> tuple[list[Finding], dict]:
    """Role/turn markers must be single tokens; split into pieces, the model has never seen this template."""
    pieces = {}
    for marker in template_markers(tokenizer, template_source, template_kwargs):
        pieces[marker] = tokenizer(marker, add_special_tokens=False)["input_ids"]
    split = {m: tokenizer.convert_ids_to_tokens(ids) for m, ids in pieces.items() if len(ids) != 1}
    stats = {"markers": {m: ids for m, ids in pieces.items()}}
    if not split:
        return [], stats
    shown = "; ".join(f"{m!r} -> {len(p)} pieces {p[:6]}" for m, p in split.items())
    return [Finding(
        "template.role_markers", "error",
        f"the template's markers are not single tokens of this tokenizer: {shown}. The model has never seen this "
        "template (the usual sign of a base model, or of another family's template on this vocabulary); it must "
        "learn the format from scratch and the markers cannot act as stop tokens.",
        fix="use the model's own template (leave data.template unset) or a model whose vocabulary has these "
            "special tokens", data={"split": split})], stats


def check_double_bos(tokenizer, rendered: list) -> tuple[list[Finding], dict]:
    bos = tokenizer.bos_token_id
    bad = [r.source for r in rendered if bos is not None and len(r.ids) > 1 and r.ids[0] == bos == r.ids[1]]
    if not bad:
        return [], {"double_bos": 0}
    return [Finding(
        "template.double_bos", "error",
        f"{len(bad)} sequence(s) start with two BOS tokens ({tokenizer.bos_token!r} twice): the template already "
        "writes BOS and the tokenizer added another. The model trains on a start it never sees at inference.",
        fix="tokenise rendered text with add_special_tokens=False, or remove BOS from the data", examples=bad)
    ], {"double_bos": len(bad)}


def check_pad_eos(tokenizer, rendered: list, train_eot: bool = True, mode: str = "all_assistant",
                  flat: tuple | None = None) -> tuple[list[Finding], dict]:
    """With pad == eos, a mask built by id (labels[ids == pad] = -100) would erase every EOS (failure mode 10).

    Our mask is positional, so EOS stays trained; this counts the trained EOS tokens to prove it.
    """
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    stats = {"pad_token_id": pad, "eos_token_id": eos, "pad_is_eos": pad is None or pad == eos}
    if eos is None or not rendered or not stats["pad_is_eos"] or mode == "everything":
        return [], stats
    ids, mask, _ = flat if flat is not None else flatten(rendered)
    n = int(((ids == eos) & mask).sum())
    stats["trained_eos"] = n
    if n == 0 and train_eot:
        return [Finding(
            "template.pad_eos", "error",
            f"pad == eos ({tokenizer.eos_token!r}, id {eos}) and not one EOS token is trained: the model never learns "
            "to stop (the classic pad-masking bug).",
            fix="mask padding by position, not by token id; keep data.train_eot: true", data=stats)], stats
    what = "no pad token" if pad is None else f"pad == eos ({tokenizer.eos_token!r}, id {eos})"
    return [Finding(
        "template.pad_eos", "info",
        f"{what}: padding is masked by position, not by id, so EOS stays trained ({n:,} trained EOS tokens).",
        data=stats)], stats


def check_saved_template(tokenizer, examples: list, rendered: list, template_source: str | None = None,
                         template_kwargs: dict | None = None, system_message: str = "keep", sample: int = 16,
                         seed: int = 0) -> tuple[list[Finding], dict]:
    """Save the tokenizer as the run will ship it, reload it, and render a sample with the reloaded template.

    The run ships the template it trained with; when that is a custom one (data.template), the model's original
    tokenizer files carry a different template, and serving from them formats prompts differently.
    """
    from transformers import AutoTokenizer

    by_source = {ex.source: ex for ex in examples}
    picked = _sample(rendered, by_source, sample, seed)
    if not picked:
        return [], {"sampled": 0}
    original = tokenizer.chat_template
    findings = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if template_source is not None:
                tokenizer.chat_template = template_source
            tokenizer.save_pretrained(tmp)
        finally:
            tokenizer.chat_template = original
        saved = AutoTokenizer.from_pretrained(tmp)
    bad = []
    for i in picked:
        r = rendered[i]
        want = _expected_text(saved, by_source[r.source], r.turn, None, template_kwargs or {}, system_message)
        if want != r.text:
            bad.append(r.source)
    if bad:
        findings.append(Finding(
            "template.saved_template", "error",
            f"the chat template saved with the model renders {len(bad)} of {len(picked)} sampled examples "
            "differently from the training text: served prompts will not match training (failure mode 14).",
            fix="save the exact training template with the tokenizer (tokenizer.chat_template = training template)",
            examples=bad))
    custom_differs = template_source is not None and template_source != original
    if custom_differs:
        base = ("the base model ships no chat template" if not original else
                "it differs from the template shipped with the base model")
        findings.append(Finding(
            "template.custom_template", "warning",
            f"training uses a custom data.template and {base}: anything that serves this model from the base "
            "model's tokenizer files (vLLM, Ollama, a GGUF export) will format prompts differently from training.",
            fix="serve with the tokenizer saved in the run folder (it carries the training template), or train "
                "with the model's own template"))
    return findings, {"sampled": len(picked), "mismatch": len(bad), "custom_template": custom_differs}


def check_template(tokenizer, examples: list, rendered: list, *, template_source: str | None = None,
                   template_kwargs: dict | None = None, system_message: str = "keep", mode: str = "all_assistant",
                   train_eot: bool = True, sample: int = 64, seed: int = 0,
                   timings: dict | None = None) -> tuple[list[Finding], dict[str, Any]]:
    """All template checks. `template_source` None means the tokenizer's own chat template."""
    import time

    findings: list[Finding] = []
    stats: dict[str, Any] = {}
    kinds_by_source = {ex.source: ex.kind for ex in examples}
    kinds = [kinds_by_source.get(r.source, "chat") for r in rendered]
    has_chat = any(k == "chat" for k in kinds)
    flat = flatten(rendered)
    steps = [
        ("eot", lambda: check_eot(tokenizer, rendered, kinds, mode, train_eot, flat)),
        ("double_bos", lambda: check_double_bos(tokenizer, rendered)),
        ("pad_eos", lambda: check_pad_eos(tokenizer, rendered, train_eot, mode, flat)),
        ("prefix_stability", lambda: check_prefix_stability(rendered)),
    ]
    if has_chat:
        steps = [
            ("parity", lambda: check_parity(tokenizer, examples, rendered, template_source, template_kwargs,
                                            system_message, sample, seed)),
            ("role_markers", lambda: check_role_markers(tokenizer, template_source, template_kwargs)),
            ("saved_template", lambda: check_saved_template(tokenizer, examples, rendered, template_source,
                                                            template_kwargs, system_message, min(sample, 16), seed)),
        ] + steps
    for name, fn in steps:
        t0 = time.perf_counter()
        f, s = fn()
        findings += f
        stats[name] = s
        if timings is not None:
            timings[f"template.{name}"] = round(time.perf_counter() - t0, 3)
    return findings, stats
