"""Shared pieces of the recipe-task generators: the TaskData record, the seen/unseen builder, pool splitting,
inline word lists and the JSONL writer. Pure stdlib; every random choice goes through a `random.Random` seeded
with a string (hashed with SHA-512 by `random`, so independent of PYTHONHASHSEED) and nothing iterates a set.
"""
from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SLICES = ("seen", "unseen")


@dataclass
class TaskData:
    name: str
    train: list[dict]          # {"messages": [...], "id": str}
    eval: list[dict]           # {"messages": [...], "id": str, "slice": "seen" | "unseen"}
    metrics: list[str]
    primary_metric: str
    description: str
    # id -> {"part": "train"|"seen"|"unseen", "templates": tuple[str, ...], "entities": tuple[str, ...],
    #        "fields": dict}: the phrasing-template ids and key entity values behind each record, kept for the
    #        leakage / determinism tests; never written to the JSONL files.
    meta: dict[str, dict] = field(default_factory=dict, repr=False)

    def eval_slice(self, name: str) -> list[dict]:
        return [r for r in self.eval if r["slice"] == name]


# --------------------------------------------------------------------------------------------------------------
# Small helpers


def dumps(obj) -> str:
    """The one JSON rendering used for answers: single line, ', ' and ': ' separators, key order as built."""
    return json.dumps(obj, ensure_ascii=False)


def answer(record: dict) -> str:
    """The reference: content of the last assistant turn."""
    return [m for m in record["messages"] if m["role"] == "assistant"][-1]["content"]


def user_texts(record: dict) -> list[str]:
    return [m["content"] for m in record["messages"] if m["role"] == "user"]


def split_pool(rng: random.Random, items: Sequence, n_unseen: int) -> tuple[list, list]:
    """Shuffle a copy of `items` and cut it: (train part, unseen part). Items must be distinct."""
    items = list(items)
    assert len(set(map(repr, items))) == len(items), "pool items must be distinct"
    assert 0 < n_unseen < len(items)
    rng.shuffle(items)
    return items[n_unseen:], items[:n_unseen]


def split_templates(rng: random.Random, prefix: str, texts: Sequence[str], n_unseen: int
                    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Number the templates ("prefix-07") and split them into (train, unseen) lists of (id, text)."""
    return split_pool(rng, [(f"{prefix}-{i:02d}", t) for i, t in enumerate(texts)], n_unseen)


def pick(rng: random.Random, pool: Sequence):
    return pool[rng.randrange(len(pool))]


def thousands(n: int) -> str:
    return f"{n:,}"


def fmt_num(x) -> str:
    """A number as JSON writes it (int when whole)."""
    return json.dumps(x)


def surface_case(rng: random.Random, template: str, p_lower: float = 0.08) -> str:
    """Occasionally write the template's own words in lower case (slot values are filled in afterwards, so the
    entities keep their casing); drop the final full stop now and then."""
    if rng.random() < p_lower:
        template = template.lower()
    if template.endswith(".") and rng.random() < 0.1:
        template = template[:-1]
    return template


# --------------------------------------------------------------------------------------------------------------
# The seen/unseen builder

Maker = Callable[[random.Random, str, int], tuple[list[dict], tuple[str, ...], tuple[str, ...], dict]]


def build(name: str, seed: int, make: Maker, n_train: int, n_seen: int, n_unseen: int, *, metrics: list[str],
          primary_metric: str, description: str, rng: random.Random) -> TaskData:
    """Draw examples with `make(rng, part, idx) -> (messages, template_ids, entities, fields)`.

    part is "train", "seen" (training templates and entity pools, fresh combinations) or "unseen" (held-out
    templates and held-out entity pools); idx is the number of examples accepted so far in that part, so label
    cycling on idx stays balanced. An example is rejected (and redrawn with the same idx) when any of its user
    messages already occurs in train or in an earlier example of the same split, so no eval user text appears
    verbatim in train and train has no duplicate prompts.
    """
    train_users: set[str] = set()
    eval_users: set[str] = set()
    meta: dict[str, dict] = {}
    parts: dict[str, list[tuple[list[dict], dict]]] = {"train": [], "seen": [], "unseen": []}
    for part, n in (("train", n_train), ("seen", n_seen), ("unseen", n_unseen)):
        tries = 0
        while len(parts[part]) < n:
            tries += 1
            if tries > 50 * n + 1000:
                raise RuntimeError(f"{name}: could not draw {n} distinct {part} examples")
            messages, templates, entities, fields = make(rng, part, len(parts[part]))
            users = [m["content"] for m in messages if m["role"] == "user"]
            taken = train_users | eval_users if part != "train" else train_users
            if any(u in taken for u in users) or len(set(users)) != len(users):
                continue
            (train_users if part == "train" else eval_users).update(users)
            parts[part].append((messages, {"part": part, "templates": tuple(templates),
                                           "entities": tuple(entities), "fields": fields}))
    rng.shuffle(parts["train"])
    train, evals = [], []
    for i, (messages, m) in enumerate(parts["train"]):
        rid = f"{name}-train-{i:05d}"
        train.append({"messages": messages, "id": rid})
        meta[rid] = m
    for part in SLICES:
        for i, (messages, m) in enumerate(parts[part]):
            rid = f"{name}-{part}-{i:04d}"
            evals.append({"messages": messages, "id": rid, "slice": part})
            meta[rid] = m
    return TaskData(name=name, train=train, eval=evals, metrics=metrics, primary_metric=primary_metric,
                    description=description, meta=meta)


def chat(system: str | None, *turns: tuple[str, str]) -> list[dict]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": role, "content": content} for role, content in turns]


# --------------------------------------------------------------------------------------------------------------
# Writing


def _write_jsonl(path: Path, records: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def write_task(data: TaskData, out_dir: Path) -> dict[str, Path]:
    """train.jsonl, eval.jsonl (seen then unseen), eval_seen.jsonl, eval_unseen.jsonl under out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"train": out_dir / "train.jsonl", "eval": out_dir / "eval.jsonl",
             "eval_seen": out_dir / "eval_seen.jsonl", "eval_unseen": out_dir / "eval_unseen.jsonl"}
    _write_jsonl(paths["train"], data.train)
    _write_jsonl(paths["eval"], data.eval)
    _write_jsonl(paths["eval_seen"], data.eval_slice("seen"))
    _write_jsonl(paths["eval_unseen"], data.eval_slice("unseen"))
    return paths


# --------------------------------------------------------------------------------------------------------------
# Inline word lists (invented or common; no external data). Each task splits them with its own seed.

FIRST_NAMES = [
    "Maria", "James", "Aisha", "Liam", "Sofia", "Noah", "Priya", "Lucas", "Elena", "Omar", "Hannah", "Mateo",
    "Yuki", "Daniel", "Fatima", "Oliver", "Ingrid", "Kwame", "Chloe", "Ravi", "Amara", "Tomas", "Leila", "Samuel",
    "Nadia", "Ethan", "Mei", "Jonas", "Zara", "Felix", "Anika", "Diego", "Greta", "Hugo", "Imani", "Kenji",
    "Laura", "Marcus", "Nina", "Oscar", "Paula", "Rafael", "Sara", "Theo", "Uma", "Victor", "Wanda", "Xavier",
    "Yara", "Zoltan", "Beatrice", "Cyrus", "Dalia", "Emil", "Farah", "Gustav", "Helena", "Idris", "Joanna",
    "Kofi", "Lena", "Milo", "Noor", "Petra",
]
LAST_NAMES = [
    "Lopez", "Okafor", "Schmidt", "Tanaka", "Novak", "Haddad", "Fischer", "Moreau", "Kowalski", "Silva",
    "Andersen", "Kapoor", "Brennan", "Costa", "Dubois", "Eriksen", "Ferrari", "Gallagher", "Hoffman", "Ibrahim",
    "Jensen", "Kim", "Larsen", "Mendes", "Nakamura", "Olsen", "Petrov", "Quinn", "Rossi", "Sato", "Torres",
    "Ueda", "Varga", "Walsh", "Yilmaz", "Zimmer", "Abbott", "Bianchi", "Castillo", "Delgado", "Engel", "Fontaine",
    "Grant", "Horvat", "Iversen", "Jovanovic", "Keller", "Lindqvist", "Mahler", "Nilsen", "Ortega", "Pereira",
    "Reyes", "Strand", "Tamura", "Vidal", "Weber", "Young", "Banerjee", "Chen", "Duarte", "Evans", "Marsh", "Nolan",
]
CITIES = [
    "Oslo", "Lisbon", "Denver", "Toronto", "Nairobi", "Kyoto", "Porto", "Dublin", "Austin", "Seville", "Krakow",
    "Bergen", "Lyon", "Munich", "Valencia", "Tampere", "Leeds", "Bristol", "Ghent", "Utrecht", "Graz", "Turin",
    "Bologna", "Malmo", "Aarhus", "Cork", "Halifax", "Quebec City", "San Diego", "New Orleans", "Buenos Aires",
    "Cape Town", "Salt Lake City", "Las Vegas", "Rio de Janeiro", "Kuala Lumpur", "Hong Kong", "Tel Aviv",
    "St. Louis", "Santa Fe", "Reykjavik", "Tallinn", "Riga", "Vilnius", "Bratislava", "Ljubljana", "Zagreb",
    "Sarajevo", "Tbilisi", "Yerevan", "Osaka", "Busan", "Hanoi", "Perth", "Hobart", "Wellington", "Dunedin",
    "Montevideo", "Cusco", "Medellin",
]
