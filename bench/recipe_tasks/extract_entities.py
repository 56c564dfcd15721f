"""extract_entities: a short text about a person, an organisation, a date and an amount ->
{"person": ..., "org": ..., "date": "YYYY-MM-DD", "amount": number}.

Dates come in six surface forms (normalised to ISO), amounts in nine (the answer is the plain number, no
currency). Most templates carry a distractor number (invoice, shares, room, percentage...) and half the texts
get a distractor sentence, so copying the first number is wrong. Unseen first names, surnames and organisation
stems never occur in train; 12 of the 40 templates are held out for the unseen slice.
"""
from __future__ import annotations

import datetime as dt
import random

from ._common import (
    CITIES,
    FIRST_NAMES,
    LAST_NAMES,
    TaskData,
    build,
    chat,
    dumps,
    pick,
    split_pool,
    split_templates,
    surface_case,
    thousands,
)

NAME = "extract_entities"

SYSTEM = ('Extract as JSON: {"person": ..., "org": ..., "date": "YYYY-MM-DD", "amount": number}. '
          "a/b/yyyy dates are month/day/year.")

TEMPLATES = [
    "On {date}, {person} signed a contract with {org} worth {amount}.",
    "{org} paid {person} {amount} on {date} for consulting work (invoice {num}).",
    "{person} from {org} approved a budget of {amount} on {date}.",
    "Invoice {num}: {org} owes {person} {amount}, due {date}.",
    "According to the report, {person} transferred {amount} to {org} on {date}.",
    "{org} hired {person} on {date} with a signing bonus of {amount}.",
    "The {num}-page agreement between {person} and {org} was finalised on {date}; total value {amount}.",
    "{person} donated {amount} to {org} on {date} during the {city} fundraiser.",
    "On {date} {org} refunded {amount} to {person} after {small} complaints.",
    "{person} (employee no. {num}) was reimbursed {amount} by {org} on {date}.",
    "Meeting notes: {person} confirmed that {org} will invest {amount}. Signed {date}.",
    "A payment of {amount} from {org} reached {person} on {date}, ref {num}.",
    "{org} fined {person} {amount} on {date} for breaching clause {small}.",
    "{person} bought {num} shares of {org} for a total of {amount} on {date}.",
    "Per the memo dated {date}, {person} will receive {amount} from {org}.",
    "The board of {org} awarded {person} a grant of {amount} on {date}.",
    "hey, just fyi {person} sent {amount} to {org} on {date}, order {num}",
    "{amount} was wired by {person} to {org} on {date}.",
    "Dated {date}: {org} agrees to lend {person} {amount} at {pct}% interest.",
    "{person} settled the dispute with {org} on {date} for {amount}.",
    "Room {small}, {city}: {person} met {org} on {date} and agreed on {amount}.",
    "{org} announced on {date} that Prof. {person} would lead a {amount} project.",
    "The sum of {amount} was invoiced by {org} to {person} on {date}.",
    "{person} won {amount} in the {org} hackathon held on {date} with {small} teams.",
    "Receipt #{num} - {org} - {date} - customer {person} - total {amount}",
    "{person} and {org} closed the deal on {date}: {amount} over {small} months.",
    "On behalf of {org}, {person} accepted a payment of {amount} on {date}.",
    "{org} sponsored the trip of {person} to {city} with {amount} on {date}.",
    "{person} claimed {amount} in expenses from {org} for the period ending {date}.",
    "Last update ({date}): {org} still owes {person} {amount} across {small} invoices.",
    "{person} lent {org} {amount} on {date}, to be repaid in {small} instalments.",
    "A {pct}% discount brought the {org} bill of {person} down to {amount} on {date}.",
    "{org} paid out {amount} to {person} on {date} after a {small}-day review.",
    "Transaction log {num}: {date}, {person} -> {org}, {amount}",
    "{person} has pledged {amount} to {org}; the pledge was recorded on {date}.",
    "It was on {date} that {org} reimbursed Dr. {person} the {amount} deposit.",
    "{person}, acting for {org}, ordered equipment worth {amount} on {date} (PO {num}).",
    "The court ordered {org} to pay {person} {amount} on {date}.",
    "{org} issued {person} a voucher worth {amount} on {date}, valid {small} days.",
    "Pls note: {person} returned {amount} to {org} on {date}.",
]

EXTRA = [" The file has {small2} pages.", " See ticket {num2}.", " Questions: call ext. {num2}.",
         " {small2} people attended.", " Filed from the {city} office.", " Reference: case {num2}.",
         " Approval took {small2} days.", " Priority {small2} of {pct}."]

ORG_STEMS = ["Brightwave", "Kestrel", "Ironbark", "Bluefin", "Copperleaf", "Northgate", "Silverline", "Redwood",
             "Greenfield", "Stonebridge", "Harborview", "Lakeshore", "Summit", "Pinecrest", "Goldcrest",
             "Riverbend", "Clearpath", "Highland", "Westbrook", "Oakmont", "Falconridge", "Starling", "Mosaic",
             "Quantum", "Evergreen", "Blackstone", "Crescent", "Trident", "Beacon", "Meridian", "Horizon",
             "Granite", "Aurora", "Cascade", "Driftwood", "Foxglove", "Ember", "Sapphire", "Tidewater",
             "Wildflower", "Zenith", "Larkspur", "Moonstone", "Thistle", "Alder", "Brackenridge", "Coral",
             "Dunmore"]
ORG_SUFFIXES = ["Analytics", "Logistics", "Ltd", "Group", "Partners", "Labs", "Holdings", "Systems", "Foods",
                "Energy", "Health", "Media", "Capital", "Foundation", "Robotics", "Bank"]

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


def ordinal(d: int) -> str:
    suffix = "th" if 11 <= d % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")
    return f"{d}{suffix}"


def date_forms(d: dt.date) -> list[str]:
    """Every surface form a date may take in the text (all normalise to d.isoformat())."""
    m = MONTHS[d.month - 1]
    return [f"{m} {d.day}, {d.year}", f"{m[:3]} {d.day}, {d.year}", f"{d.month}/{d.day}/{d.year}", d.isoformat(),
            f"{ordinal(d.day)} of {m} {d.year}", f"{d.day} {m} {d.year}"]


def amount_forms(cents: int) -> list[str]:
    """Every surface form an amount (in cents) may take; the answer is the number itself."""
    whole, frac = divmod(cents, 100)
    num = thousands(whole) + (f".{frac:02d}" if frac else "")
    plain = str(whole) + (f".{frac:02d}" if frac else "")
    forms = [f"${num}", f"{num} dollars", f"USD {num}", f"€{num}", f"{num} euros", f"EUR {plain}", f"£{num}",
             f"{plain} GBP"]
    if not frac:
        forms.append(f"${num}.00")
    return forms


def amount_value(cents: int):
    return cents // 100 if cents % 100 == 0 else cents / 100


def generate(seed: int = 0) -> TaskData:
    rng = random.Random(f"{NAME}:{seed}")
    templates = split_templates(rng, "sent", TEMPLATES, 12)
    extras = split_templates(rng, "extra", EXTRA, 3)
    firsts = split_pool(rng, FIRST_NAMES, 20)
    lasts = split_pool(rng, LAST_NAMES, 20)
    stems = split_pool(rng, ORG_STEMS, 15)
    start = dt.date(2015, 1, 1).toordinal()
    span = dt.date(2027, 12, 31).toordinal() - start

    def make(r: random.Random, part: str, idx: int):
        k = 0 if part in ("train", "seen") else 1
        t_id, tpl = pick(r, templates[k])
        first, last, stem = pick(r, firsts[k]), pick(r, lasts[k]), pick(r, stems[k])
        person, org = f"{first} {last}", f"{stem} {pick(r, ORG_SUFFIXES)}"
        date = dt.date.fromordinal(start + r.randrange(span))
        mag = r.choice([100, 1000, 10000, 100000, 1000000])
        cents = r.randint(mag // 10 + 1, mag) * 100
        if r.random() < 0.3:
            cents += r.randint(1, 99)
        date_s, amount_s = pick(r, date_forms(date)), pick(r, amount_forms(cents))
        slots = {"person": person, "org": org, "date": date_s, "amount": amount_s, "num": r.randint(100, 98765),
                 "small": r.randint(2, 60), "pct": r.randint(2, 30), "city": pick(r, CITIES),
                 "num2": r.randint(100, 98765), "small2": r.randint(2, 60)}
        tids = [t_id]
        if r.random() < 0.5:
            e_id, extra = pick(r, extras[k])
            tpl = tpl + ("" if tpl[-1] in ".)" else ".") + extra
            tids.append(e_id)
        text = surface_case(r, tpl, 0.05).format(**slots)
        ref = dumps({"person": person, "org": org, "date": date.isoformat(), "amount": amount_value(cents)})
        fields = {"person": person, "org": org, "date": date.isoformat(), "cents": cents, "date_text": date_s,
                  "amount_text": amount_s}
        return (chat(SYSTEM, ("user", text), ("assistant", ref)), tuple(tids),
                (person, org, first, last, stem), fields)

    return build(NAME, seed, make, 1350, 100, 100, rng=rng, metrics=["json_valid", "json_field_match", "exact_match"],
                 primary_metric="json_field_match",
                 description="Text -> JSON {person, org, date (ISO), amount (number)}; 40 sentence templates (12 "
                             "held out), 6 date and 9 amount surface forms, distractor numbers, held-out names/orgs.")
