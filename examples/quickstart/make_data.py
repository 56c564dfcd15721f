"""Generate the quickstart task: turn a one-sentence order into compact JSON with a fixed key order.

Deterministic (seeded), so the committed train.jsonl / eval.jsonl are reproducible byte for byte:

    python examples/quickstart/make_data.py [OUT_DIR]   # train.jsonl (300) + eval.jsonl (60), default: beside this file

Why this task: the base SmolLM2-135M-Instruct understands the request but answers in its own shape (pretty-printed,
other key names, quoted numbers), so exact match starts near 0; a few minutes of LoRA teach the exact format and the
field extraction, which exact match on held-out sentences can verify. The eval sentences are written from phrasings
training never uses (EVAL_TEMPLATES), so the eval scores the task, not recall of the training phrasings (docs/eval.md:
on data written from a few patterns, a split that shares them with training overstated exact match by 0.3).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

SYSTEM = "Extract the order as compact JSON with keys name, age, city, item, color, qty."
FIRST = ["Maria", "John", "Aisha", "Chen", "Lukas", "Sofia", "Omar", "Yuki", "Ivan", "Grace", "Mateo", "Nina",
         "Ravi", "Elena", "Tom", "Zara", "Pablo", "Hana", "Kofi", "Lea", "Sam", "Ingrid", "Diego", "Mei"]
LAST = ["Lopez", "Smith", "Khan", "Wang", "Meyer", "Rossi", "Haddad", "Tanaka", "Petrov", "Okafor", "Silva",
        "Novak", "Patel", "Costa", "Brown", "Ali", "Garcia", "Kim", "Mensah", "Dubois", "Berg", "Moreau"]
CITIES = ["Lisbon", "Oslo", "Nairobi", "Lima", "Osaka", "Denver", "Krakow", "Porto", "Dublin", "Seoul", "Quito",
          "Austin", "Tunis", "Hanoi", "Leeds", "Perth", "Turin", "Bergen", "Cusco", "Accra"]
ITEMS = ["lamp", "chair", "mug", "notebook", "backpack", "kettle", "pillow", "towel", "candle", "basket",
         "blanket", "clock"]
COLORS = ["red", "blue", "green", "black", "white", "yellow", "grey", "orange", "purple", "brown"]
TEMPLATES = [
    "{name} ({age}) from {city} ordered {qty} {color} {item}s.",
    "Order: {qty} x {color} {item}, for {name}, age {age}, shipping to {city}.",
    "Ship {qty} {color} {item}s to {city}; the buyer is {name}, {age} years old.",
    "{name}, a {age}-year-old customer in {city}, wants {qty} {color} {item}s.",
    "Please send {qty} {color} {item}s to {name} ({age}) in {city}.",
    "New order from {city}: {name}, {age}, bought {qty} {color} {item}s.",
]
EVAL_TEMPLATES = [  # only in eval.jsonl
    "Could you get {qty} {color} {item}s over to {name} in {city}? They are {age}.",
    "{city} customer {name}, aged {age}, is asking for {qty} {color} {item}s.",
    "I'm {name}, {age}, living in {city}, and I need {qty} {color} {item}s.",
    "Deliver {qty} {color} {item}s for {name} ({age} years) at the {city} address.",
]


def example(rng: random.Random, templates: list[str]) -> dict:
    f = {"name": f"{rng.choice(FIRST)} {rng.choice(LAST)}", "age": rng.randint(18, 79), "city": rng.choice(CITIES),
         "item": rng.choice(ITEMS), "color": rng.choice(COLORS), "qty": rng.randint(2, 9)}
    sentence = rng.choice(templates).format(**f)
    answer = json.dumps(f, separators=(",", ":"))  # fixed key order: name, age, city, item, color, qty
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": sentence},
                         {"role": "assistant", "content": answer}]}


def main(out_dir: Path | None = None, n_train: int = 300, n_eval: int = 60, seed: int = 0) -> None:
    rng = random.Random(seed)
    seen: set[str] = set()
    parts: dict[str, list[dict]] = {"train.jsonl": [], "eval.jsonl": []}
    for name, n, templates in (("train.jsonl", n_train, TEMPLATES), ("eval.jsonl", n_eval, EVAL_TEMPLATES)):
        while len(parts[name]) < n:
            ex = example(rng, templates)
            key = ex["messages"][1]["content"]
            if key not in seen:  # no sentence appears twice
                seen.add(key)
                parts[name].append(ex)
    out_dir = out_dir or Path(__file__).resolve().parent
    for name, part in parts.items():
        (out_dir / name).write_text("".join(json.dumps(r) + "\n" for r in part))
        print(f"wrote {out_dir / name}: {len(part)} examples")

if __name__ == "__main__":
    import sys

    main(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
