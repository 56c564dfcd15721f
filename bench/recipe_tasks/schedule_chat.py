"""schedule_chat: a multi-turn conversation that books a meeting; the answer scored is free text, by ROUGE-L.

    user       Set up a design sync with Maria Lopez.
    assistant  Which day and what time?
    user       next tue, half past 2 pm works.
    assistant  Booked the design sync with Maria Lopez on Tuesday at 14:30.

A request names the person and the topic, and the day and the time, or only the day, or neither; the assistant asks
for what is missing (one fixed question per case) and confirms in one sentence once it has everything, with the day
spelled out and the time as 24-hour HH:MM, whatever form the user wrote them in ("2:30pm", "14:30", "half past 2
pm", "noon"; "Tue", "next Tuesday", "on tuesday"). Unseen: a third of the request and reply phrasings, the topics and
the names never occur in train. Every assistant turn is trained; the scored reference is the confirmation.
"""
from __future__ import annotations

import random

from ._common import FIRST_NAMES, LAST_NAMES, TaskData, build, chat, pick, split_pool, split_templates, surface_case

NAME = "schedule_chat"

SYSTEM = ("You book meetings. If the request lacks the day or the time, ask for what is missing in one short question. "
          "Once you know the person, the topic, the day and the time, confirm in one sentence: Booked the <topic> "
          "with <person> on <Day> at <HH:MM>.")

FULL = [  # day and time given
    "Set up a {topic} with {person} {day} at {time}.",
    "Can you book {person} for the {topic} {day}, {time}?",
    "I need a meeting with {person} about the {topic}, {day} at {time}.",
    "Schedule the {topic} with {person} for {day} {time} please.",
    "Put a {topic} on the calendar with {person}: {day}, {time}.",
    "{person} and I need to talk about the {topic} {day} at {time}, can you book it?",
    "Please arrange a {topic} with {person} {day} around {time}.",
    "Book {time} {day} with {person} for the {topic}.",
    "Could you find us a slot {day} at {time}? It's the {topic} with {person}.",
    "Let's have the {topic} with {person} {day} at {time}.",
    "Add a meeting: {topic}, {person}, {day}, {time}.",
    "Get {person} in for the {topic} at {time} {day}.",
]
NO_TIME = [  # the day only
    "Set up a {topic} with {person} {day}.",
    "Can you book {person} for the {topic} {day}?",
    "I need a {topic} with {person} {day}, please arrange it.",
    "Schedule the {topic} with {person} for {day}.",
    "{person} wants the {topic} {day}, can you put it in?",
    "Find a time {day} for the {topic} with {person}.",
]
NEITHER = [  # neither
    "Set up a {topic} with {person}.",
    "Can you book a {topic} with {person} sometime?",
    "I need to meet {person} about the {topic}.",
    "Schedule a {topic} with {person} please.",
    "{person} wants a {topic}, can you set it up?",
    "Please put a {topic} with {person} in the calendar.",
    "Could you organise the {topic} with {person}?",
    "Arrange a meeting with {person} about the {topic}.",
    "We need a {topic} with {person} soon.",
    "Find time for a {topic} with {person}.",
    "Book me a {topic} with {person}, I don't know when yet.",
    "Can we get the {topic} with {person} in the diary?",
]
REPLY_BOTH = ["{day} at {time}.", "How about {day}, {time}?", "{day} {time} works.", "Let's say {day} at {time}.",
              "Make it {time} {day}.", "{day}, around {time}.", "Try {day} at {time} please."]
REPLY_TIME = ["{time}.", "At {time}.", "{time} works.", "Let's do {time}.", "Make it {time} please.",
              "How about {time}?"]
ASK = {"both": "Which day and what time?", "time": "What time on {Day}?"}

TOPICS = ["budget review", "hiring plan", "design sync", "quarterly planning", "product demo", "onboarding chat",
          "sprint retro", "contract renewal", "marketing update", "security audit", "roadmap check-in",
          "vendor call", "team lunch", "performance review", "launch prep", "data migration", "pricing discussion",
          "offsite planning", "support escalation", "user research session", "board prep", "code review",
          "travel planning", "press briefing"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]


def day_forms(day: str) -> list[str]:
    """How a request may write the day (the confirmation always spells it out)."""
    return [f"on {day}", f"next {day}", f"this {day}", f"on {day[:3]}", f"on {day.lower()}", day]


def time_forms(h: int, m: int) -> list[str]:
    """How a request may write the time (the confirmation writes HH:MM, 24-hour)."""
    h12, ampm = (h - 1) % 12 + 1, "am" if h < 12 else "pm"
    forms = [f"{h:02d}:{m:02d}", f"{h12}:{m:02d} {ampm}", f"{h12}:{m:02d}{ampm}"]
    if m == 0:
        forms += [f"{h12}{ampm}", f"{h12} {ampm}"] + (["noon"] if h == 12 else [])
    if m == 30:
        forms.append(f"half past {h12} {ampm}")
    return forms


def generate(seed: int = 0) -> TaskData:
    rng = random.Random(f"{NAME}:{seed}")
    full = split_templates(rng, "full", FULL, 4)
    no_time = split_templates(rng, "notime", NO_TIME, 2)
    neither = split_templates(rng, "neither", NEITHER, 3)
    reply_both = split_templates(rng, "reply2", REPLY_BOTH, 2)
    reply_time = split_templates(rng, "reply1", REPLY_TIME, 2)
    topics = split_pool(rng, TOPICS, 8)
    firsts = split_pool(rng, FIRST_NAMES, 20)
    lasts = split_pool(rng, LAST_NAMES, 20)

    def make(r: random.Random, part: str, idx: int):
        k = 0 if part in ("train", "seen") else 1
        person = f"{pick(r, firsts[k])} {pick(r, lasts[k])}"
        topic, day = pick(r, topics[k]), DAYS[r.randrange(5)]
        h, m = r.randint(8, 17), r.choice([0, 0, 15, 30, 30, 45])
        slots = {"person": person, "topic": topic, "day": pick(r, day_forms(day)), "time": pick(r, time_forms(h, m))}
        missing = ("none", "time", "both")[idx % 3]  # a third of each: label cycling on idx keeps it balanced
        confirm = f"Booked the {topic} with {person} on {day} at {h:02d}:{m:02d}."
        request = {"none": full, "time": no_time, "both": neither}[missing][k]
        t_id, tpl = pick(r, request)
        first = surface_case(r, tpl, 0.06).format(**slots)
        first = first[0].upper() + first[1:]
        templates = [t_id]
        turns = [("user", first)]
        if missing != "none":
            r_id, reply = pick(r, (reply_both if missing == "both" else reply_time)[k])
            text = reply.format(**slots)
            turns += [("assistant", ASK[missing].format(Day=day)), ("user", text[0].upper() + text[1:])]
            templates.append(r_id)
        turns.append(("assistant", confirm))
        fields = {"person": person, "topic": topic, "day": day, "time": f"{h:02d}:{m:02d}", "missing": missing,
                  "day_text": slots["day"], "time_text": slots["time"]}
        return chat(SYSTEM, *turns), tuple(templates), (person, topic), fields

    return build(NAME, seed, make, 900, 100, 100, rng=rng, metrics=["rouge_l", "token_f1", "exact_match"],
                 primary_metric="rouge_l",
                 description="Multi-turn booking: the assistant asks for a missing day / time, then confirms in one "
                             "sentence (day spelled out, time HH:MM); 30 request and 13 reply phrasings (13 held "
                             "out), held-out topics and names; scored by ROUGE-L.")
