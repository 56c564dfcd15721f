"""rewrite_format: a free-form address (chat message, order note, label, form dump) -> exactly

    Name: <name>
    Street: <number> <street name> <street type spelled out>
    City: <city>
    Postcode: <5 digits>

Inputs put the parts in varying order ("Elm St. 14, 40213 Springfield"), abbreviate street types (St, Ave, Rd...),
and add distractor numbers (order numbers of 5 digits too, phone numbers, buzzer codes). 10 of the 32 templates,
and the name parts, street names and cities of the unseen slice, never occur in train.
"""
from __future__ import annotations

import random

from ._common import (
    CITIES,
    FIRST_NAMES,
    LAST_NAMES,
    TaskData,
    build,
    chat,
    pick,
    split_pool,
    split_templates,
    surface_case,
)

NAME = "rewrite_format"

SYSTEM = ("Rewrite the address as four lines: Name, Street (house number first, street type spelled out), City, "
          "Postcode. Ignore everything else.")

TEMPLATES = [
    "Please ship to {name}, {num} {street}, {city} {pc}.",
    "{name}\n{num} {street}\n{pc} {city}",
    "send it to {name} at {num} {street} in {city}, postcode {pc}",
    "Deliver to: {city} {pc}, {street} {num}, attn {name}",
    "My address is {num} {street}, {city}, {pc}. Name on the door: {name}. Order #{order}.",
    "hi can u send the parcel to {name} {num} {street} {city} {pc} thx",
    "Recipient: {name} | Address: {num} {street} | {pc} {city} | Phone: {phone}",
    "{name} lives at {num} {street}. City: {city}. Zip: {pc}.",
    "Ship order {order} to {name} - {street} {num}, {pc} {city}.",
    "Could you please update my delivery address to {num} {street}, {city} {pc}? The parcel is for {name}.",
    "Postcode {pc}, {city}. Street: {street}, number {num}. For {name}.",
    "Invoice address: {name}, {num} {street}, {pc} {city}; call {phone} if needed",
    "{name} / {num} {street} / {city} / {pc}",
    "To {name}, house number {num} on {street}, {city} ({pc}).",
    "We moved! New address for {name}: {num} {street}, {city}, {pc}.",
    "The package for {name} should go to {street} {num} in {pc} {city}, ring the bell twice.",
    "deliver to {num} {street} {city} {pc} for {name} pls, leave at back door",
    "Name {name}; street {num} {street}; city {city}; zip {pc}",
    "{pc} {city} - {num} {street} - {name}",
    "Kindly forward all mail for {name} to {num} {street}, {city} {pc}, starting in {weeks} weeks.",
    "Address on file: {num} {street}, {city}, postal code {pc} (customer {name}, account {order}).",
    "For {name}: {street} no. {num}, {city} {pc}",
    "Can the courier bring it to {name} at {num} {street}? That's in {city}, {pc}.",
    "{name}, c/o the front desk, {num} {street}, {pc} {city}",
    "ATTN {name}. {num} {street}. {city}. {pc}.",
    "mail to: {name} {num} {street} {pc} {city} (buzzer code {buzz})",
    "Please note the shipping details: {city}, {pc}; {num} {street}; recipient {name}.",
    "{name} wants the order at {num} {street}, {city} {pc}, not the old address.",
    "Send the invoice to {num} {street}, {pc} {city}, addressed to {name}.",
    "Drop-off point: {street} {num} ({city}, {pc}), contact person {name}, tel {phone}.",
    "The gift is for {name}. Their address: {num} {street}, {city} {pc}.",
    "Return address: {name}, {num} {street}, {city}, {pc}, order {order}",
]

STREET_BASES = ["Elm", "Oak", "Harbor", "Maple", "Cedar", "Willow", "Birch", "Chestnut", "Mill", "Church", "Station",
                "Park", "Lakeside", "Hill", "River", "Garden", "Orchard", "Bridge", "Castle", "Meadow", "Spring",
                "Forest", "Sunset", "Highland", "Victoria", "Kings", "Queens", "Market", "School", "Rose", "Ivy",
                "Juniper", "Laurel", "Magnolia", "Poplar", "Sycamore", "Aspen", "Hawthorn", "Linden", "Walnut",
                "Beacon", "Canal", "Dock", "Ferry", "Granary", "Quarry", "Tanner", "Wharf"]
# (full, abbreviations that may appear in the input)
STREET_TYPES = [("Street", ["St", "St."]), ("Avenue", ["Ave", "Ave."]), ("Road", ["Rd", "Rd."]),
                ("Lane", ["Ln", "Ln."]), ("Drive", ["Dr."]), ("Boulevard", ["Blvd", "Blvd."]), ("Way", []),
                ("Court", ["Ct."]), ("Place", ["Pl."])]


def generate(seed: int = 0) -> TaskData:
    rng = random.Random(f"{NAME}:{seed}")
    templates = split_templates(rng, "addr", TEMPLATES, 10)
    firsts = split_pool(rng, FIRST_NAMES, 20)
    lasts = split_pool(rng, LAST_NAMES, 20)
    bases = split_pool(rng, STREET_BASES, 16)
    cities = split_pool(rng, CITIES, 20)

    def make(r: random.Random, part: str, idx: int):
        k = 0 if part in ("train", "seen") else 1
        t_id, tpl = pick(r, templates[k])
        first, last, base, city = pick(r, firsts[k]), pick(r, lasts[k]), pick(r, bases[k]), pick(r, cities[k])
        full_type, abbrevs = pick(r, STREET_TYPES)
        written_type = pick(r, abbrevs) if abbrevs and r.random() < 0.45 else full_type
        num = str(r.randint(1, 240)) + (pick(r, ["a", "b", "B"]) if r.random() < 0.06 else "")
        pc = str(r.randint(10000, 99999))
        name = f"{first} {last}"
        slots = {"name": name, "num": num, "street": f"{base} {written_type}", "city": city, "pc": pc,
                 "order": str(r.randint(10000, 99999)),
                 "phone": f"+1 555 {r.randint(100, 999)} {r.randint(1000, 9999)}",
                 "buzz": str(r.randint(100, 9999)), "weeks": str(r.randint(2, 9))}
        text = surface_case(r, tpl, 0.06).format(**slots)
        ref = f"Name: {name}\nStreet: {num} {base} {full_type}\nCity: {city}\nPostcode: {pc}"
        fields = {"name": name, "street": f"{num} {base} {full_type}", "city": city, "postcode": pc,
                  "written_street": slots["street"]}
        return chat(SYSTEM, ("user", text), ("assistant", ref)), (t_id,), (name, first, last, base, city), fields

    return build(NAME, seed, make, 800, 100, 100, rng=rng, metrics=["exact_match", "rouge_l", "token_f1"],
                 primary_metric="exact_match",
                 description="Free-form address -> fixed 4-line Name/Street/City/Postcode block; 32 templates (10 "
                             "held out), reordered parts, abbreviated street types, distractor numbers.")
