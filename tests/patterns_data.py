"""Prompts written from sentence patterns, and natural ones, for the tests of data/skeleton.py, data/split.py, the
pattern-leakage audit and the seen / unseen eval slices. (`tests/` is on sys.path, as for helpers.py.)"""
from __future__ import annotations

import json
import random
from importlib import resources

from shipsft.data.skeleton import prompt_and_answers
from shipsft.data.types import Example

# 12 request patterns of 3 labels; every prompt gets one of 4 urgency remarks about as long as a request, and may get
# one of 4 greetings and one of 3 sign-offs, all shared by every pattern
PATTERNS = {
    "billing": ["I was charged twice for my {p} subscription this month.",
                "Why does the invoice for the {p} show the wrong amount again?",
                "Please refund the {p} payment that went through after I cancelled.",
                "The discount on the {p} was not applied when I paid at checkout."],
    "shipping": ["My {p} order has not arrived yet and it has been two weeks.",
                 "The tracking page for the {p} says delivered but nothing came.",
                 "Could you send the {p} to my new address instead of the old one?",
                 "The box with the {p} arrived crushed and a part is missing."],
    "technical": ["The {p} keeps crashing whenever I open the settings menu.",
                  "After the latest update the {p} will not turn on at all.",
                  "The screen of the {p} flickers and then goes completely black.",
                  "The {p} loses its wifi connection every few minutes since yesterday."],
}
GREETINGS = ["Hi,", "Hello team,", "Good morning,", "Hey there,"]
SIGNOFFS = ["Thanks.", "Cheers.", "Kind regards."]
REMARKS = ["This is blocking our whole team right now so please hurry.",
           "No rush at all, whenever you have a spare moment is fine.",
           "I would appreciate an answer within the next couple of days.",
           "It is getting quite annoying but it is not an emergency yet."]
PRODUCTS = ["Nimbus Router", "Aero Pad Pro", "Lumen Watch", "Orbit Cam Mini", "Zephyr Buds", "Helix Hub X2",
            "Quartzy Lamp", "Sable Desk", "Polaris Drive", "Umbra Speaker", "Willow Kettle", "Tundra Scale"]


def templated(n: int, seed: int = 0, patterns: dict = PATTERNS) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """(prompt, answers) pairs and the pattern id behind each."""
    rng = random.Random(seed)
    ids = [(label, k) for label in patterns for k in range(len(patterns[label]))]
    texts, which = [], []
    for i in range(n):
        label, k = ids[i % len(ids)]
        product = f"{rng.choice(PRODUCTS)} {i}"  # model numbers: no two answers alike (data/split.py: leak groups)
        prompt = patterns[label][k].format(p=product) + " " + rng.choice(REMARKS)
        if rng.random() < 0.6:
            prompt = rng.choice(GREETINGS) + rng.choice([" ", "\n"]) + prompt
        if rng.random() < 0.5:
            prompt += " " + rng.choice(SIGNOFFS)
        texts.append((prompt, [json.dumps({"category": label, "product": product})]))
        which.append(f"{label}-{k}")
    return texts, which


def natural() -> list[tuple[str, list[str]]]:
    """The 110 hand-written conversations shipsft ships (forgetting probe, replay set): no two written from one
    sentence pattern."""
    out = []
    for name in ("forgetting_probe.jsonl", "replay_general.jsonl"):
        text = resources.files("shipsft").joinpath(f"assets/{name}").read_text(encoding="utf-8")
        out += [prompt_and_answers(Example(source=name, messages=json.loads(line)["messages"]))
                for line in text.splitlines() if line.strip()]
    return out


def records(texts: list[tuple[str, list[str]]]) -> list[dict]:
    """(prompt, answers) pairs as messages records (a system prompt, the request, the answer)."""
    return [{"messages": [{"role": "system", "content": "Classify the ticket as JSON."},
                          {"role": "user", "content": p}, {"role": "assistant", "content": a[-1]}]}
            for p, a in texts]


def examples(texts: list[tuple[str, list[str]]], file: str = "train.jsonl") -> list[Example]:
    return [Example(source=f"{file}:{i + 1}", messages=r["messages"]) for i, r in enumerate(records(texts))]
