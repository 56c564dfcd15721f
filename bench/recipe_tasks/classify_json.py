"""classify_json: a customer message -> {"category": ..., "urgency": ..., "product": ...}.

The category is carried by the message body (32 phrasing templates per category, 10 of each held out for the
unseen slice), the urgency by a cue phrase (held out the same way), the product is the one the body talks about
(an optional distractor sentence mentions a second product). Unseen product brands never occur in train.
"""
from __future__ import annotations

import random

from ._common import TaskData, build, chat, dumps, pick, split_pool, split_templates, surface_case

NAME = "classify_json"
CATEGORIES = ["billing", "technical", "shipping", "account", "feedback"]
URGENCIES = ["low", "medium", "high"]

SYSTEM = ("Classify the customer message. Reply with JSON only: "
          '{"category": billing|technical|shipping|account|feedback, "urgency": low|medium|high, '
          '"product": the product name as written}.')

BODIES = {
    "billing": [
        "I was charged twice for my {p} subscription this month.",
        "why did my card get billed {amt} for the {p}? I never agreed to that",
        "The invoice for {p} shows the wrong amount.",
        "Could you please explain the extra fee on my last {p} bill?",
        "i got chargd for {p} after i cancelled the trial",
        "Refund request: the {p} was billed at full price even though I had a coupon.",
        "My bank statement lists a {p} payment I don't recognise.",
        "The price I paid for the {p} doesn't match the receipt.",
        "You took money for the {p} twice. Please fix the double payment.",
        "Is there a reason my {p} plan renewed at a higher rate?",
        "The {p} discount was not applied at checkout and I paid too much.",
        "I need a copy of the invoice for my {p} purchase, the one in my account is blank.",
        "payment for the {p} failed but the money still left my account??",
        "I would like a refund for the {p} annual plan I was billed for by mistake.",
        "Billing question about {p}: why was tax added twice?",
        "Charged {amt} for the {p} when the website said it was cheaper.",
        "The {p} auto-renewal charged my old credit card instead of the new one.",
        "I cancelled {p} last month yet I'm still being billed.",
        "There's a mystery charge labelled {p} on my statement, what is it for?",
        "Kindly reverse the duplicate {p} charge from yesterday.",
        "My receipt for the {p} has the wrong billing address and tax number.",
        "Pls refund the {p} overcharge, the promo price was lower.",
        "Got invoiced for {q} {p} licenses but we only use one.",
        "The {p} payment page took my money and then showed an error.",
        "Why am I paying monthly for {p} when I bought the lifetime deal?",
        "Our company card was billed {amt} for {p} without any purchase order.",
        "The store credit I was promised for the {p} is missing from my balance.",
        "I was promised a partial refund on the {p} and it never arrived.",
        "The {p} upgrade cost more than the price you quoted me.",
        "Invoice #{n} for the {p} is incorrect, please reissue it.",
        "Hey, the {p} trial was supposed to be free but I see a charge of {amt}.",
        "I've been billed in dollars instead of euros for my {p} order.",
    ],
    "technical": [
        "My {p} keeps crashing whenever I open the settings.",
        "The {p} won't turn on after the latest update.",
        "{p} shows error code {n} when I try to sync.",
        "Since yesterday the {p} disconnects from wifi every few minutes.",
        "The screen on my {p} flickers and then goes black.",
        "i cant get the {p} to pair with my phone, tried everything",
        "Is there a known bug with the {p}? It freezes on startup.",
        "After installing the update, the {p} is extremely slow.",
        "The {p} battery drains from full to empty in an hour.",
        "Could you help me? My {p} makes a clicking noise and stops working.",
        "The app for {p} logs me out every time I close it.",
        "{p} isn't saving any of my changes, they disappear after a restart.",
        "the {p} overheats badly after {q} minutes of use",
        "Every time I plug in the {p} my laptop stops recognising it.",
        "Sound from the {p} cuts out randomly during calls.",
        "The {p} firmware update failed halfway and now it's stuck.",
        "My {p} reboots itself in a loop, what can I do?",
        "Touch controls on the {p} stopped responding.",
        "Error {n} appears on the {p} display and nothing works.",
        "Teh {p} won't connect to bluetooth anymore.",
        "Our team's {p} goes offline every night at the same time.",
        "When I export files from the {p}, they come out corrupted.",
        "The {p} camera shows only a grey image.",
        "The {p} charger stopped charging the device.",
        "I reset the {p} to factory settings and it still crashes.",
        "The {p} lags so much it's unusable for video.",
        "Notifications from the {p} stopped arriving after the update.",
        "Why does my {p} show the wrong time after every restart?",
        "The {p} makes a loud beep and shows a red light.",
        "Printing from the {p} gives blank pages.",
        "The {p} dashboard won't load, just a spinning wheel.",
        "The {p} sensor reports impossible readings like {n} degrees.",
    ],
    "shipping": [
        "My {p} order hasn't arrived yet and it's been two weeks.",
        "The tracking for my {p} says delivered but I got nothing.",
        "Where is my {p}? Order #{n} still shows processing.",
        "The {p} arrived with a crushed box and missing parts.",
        "Could you change the delivery address for my {p} order?",
        "i recieved the wrong colour {p}, I ordered black",
        "The courier left my {p} at the wrong house.",
        "Can I get express delivery for the {p} I ordered this morning?",
        "My {p} package is stuck in customs, what should I do?",
        "The {p} was supposed to ship on Monday, any update?",
        "Only one of the {q} {p} units in my order was delivered.",
        "Tracking for the {p} hasn't updated in {q} days.",
        "The delivery driver said the {p} parcel was too heavy and took it back.",
        "I'd like to send the {p} back, how do I get a return shipping label?",
        "Order {n} for a {p} was marked shipped but the label was never scanned.",
        "The {p} came without the charger that was in the listing.",
        "My {p} delivery was rescheduled three times.",
        "Is it possible to pick up the {p} from a store instead of delivery?",
        "The {p} box was soaking wet when it arrived.",
        "Your site says the {p} ships in 2 days but it's been {q} days.",
        "wheres my {p}?? ordered ages ago",
        "Received someone else's {p} order in my parcel.",
        "The {p} I ordered was delivered to my old address.",
        "Please stop the shipment of the {p} before it leaves the warehouse.",
        "The {p} parcel shows returned to sender, why?",
        "I need the {p} delivered before Friday, can you guarantee that?",
        "My {p} arrived dented on one side from shipping.",
        "The tracking link for the {p} order #{n} gives an error page.",
        "We ordered {q} {p} units for the office and only got part of them.",
        "Can the {p} be shipped to a PO box?",
        "Delivery of the {p} needs a signature but I'm not home during the day.",
        "The {p} has been sitting at the depot for a week, when will it be delivered?",
    ],
    "account": [
        "I can't log in to my {p} account, password reset emails never come.",
        "Please delete my {p} account and all my data.",
        "How do I change the email address on my {p} account?",
        "My {p} account was locked after too many login attempts.",
        "Someone else logged into my {p} account, I think I was hacked.",
        "i forgot my {p} username, can you help",
        "Could you merge my two {p} accounts into one?",
        "The two-factor code for {p} never arrives on my phone.",
        "I want to transfer my {p} license to a new user.",
        "How can I add a family member to my {p} account?",
        "My {p} profile shows someone else's name.",
        "Please update the phone number linked to my {p} login.",
        "I'd like to downgrade my {p} account to the free tier.",
        "The {p} account verification link has expired.",
        "Can't sign in to the {p} app with Google anymore.",
        "Remove my old device from the {p} account please.",
        "My {p} account says it is suspended, but I did nothing wrong.",
        "How do I reset the admin password for our {p} workspace?",
        "I need to change the owner of our {p} team account.",
        "Kindly unlock my {p} account, I've been locked out since this morning.",
        "The {p} login page says my email isn't registered, but it is.",
        "Please export all data from my {p} account before I close it.",
        "Were do I change my {p} account password?",
        "I get 'session expired' every time I log into {p}.",
        "The security questions on my {p} account were changed without me.",
        "Can I have two profiles on one {p} account?",
        "I was logged out of {p} on all devices and can't get back in.",
        "Please rename my {p} account, my surname changed.",
        "The {p} account invite for my colleague never arrived.",
        "Can you turn off marketing emails for my {p} account?",
        "My {p} registration shows under the wrong account.",
        "I'm unable to verify my identity for the {p} account recovery.",
    ],
    "feedback": [
        "Love my new {p}, works exactly as advertised!",
        "The {p} is decent but the instructions could be clearer.",
        "Just wanted to say the {p} exceeded my expectations.",
        "Would be great if the {p} had a dark mode.",
        "Review: {p} - solid build, average battery, would buy again.",
        "honestly the {p} is the best thing I bought this year",
        "Suggestion: let us customise the {p} home screen.",
        "The {p} design is beautiful, well done to your team.",
        "Three stars for the {p}. Good value, nothing special.",
        "Please consider adding more colours for the {p}.",
        "The {p} is okay but louder than I expected.",
        "Your support team was very helpful with my {p} question last week, thanks!",
        "I think the {p} would be better with a longer cable.",
        "Five stars! The {p} made my mornings so much easier.",
        "Not thrilled with the {p}, it feels cheaper than the old model.",
        "Feature idea for the {p}: a shortcut to repeat the last action.",
        "My kids adore the {p}, thank you.",
        "The {p} packaging was lovely and eco-friendly, nice touch.",
        "Honest review of the {p}: great screen, weak speakers.",
        "Would recommend the {p} to anyone working from home.",
        "It'd be nice if the {p} app supported more languages.",
        "The new {p} menu layout is confusing compared to before.",
        "Just a thought: the {p} could use a travel case.",
        "Been using the {p} for {q} months, really happy with it.",
        "The {p} does what it says, no complaints.",
        "Compliments on the {p}, setup took two minutes.",
        "I wish the {p} came in a smaller size.",
        "Overall the {p} is good but the price is a bit high.",
        "Great job on the {p} redesign, it feels much faster.",
        "The {p} manual has a few typos you might want to fix.",
        "Gave the {p} as a gift and my friend loved it.",
        "Please bring back the old {p} startup sound, the new one is annoying.",
    ],
}

CUES = {
    "high": [
        "This is urgent.", "URGENT!", "Please help ASAP.", "We are losing sales every hour this continues.",
        "I need this fixed today.", "This is blocking our whole team right now.",
        "Critical issue, please respond immediately.", "I have a deadline in two hours!!",
        "Emergency - please prioritise this.", "Need an answer right away.", "this is extremely urgent",
        "I can't wait any longer, please act now.",
    ],
    "medium": [
        "Please look into it this week.", "A reply in the next few days would be appreciated.",
        "Would be good to sort this out soon.", "Let me know when you can, ideally this week.",
        "Not an emergency but it is getting annoying.", "Please get back to me within a couple of days.",
        "Hoping for an update soon.", "Some time this week would be fine.",
        "Please follow up when possible, it matters to me.", "I'd appreciate a timely response.",
        "Reasonably soon would be great.", "Could someone check in the next day or two?",
    ],
    "low": [
        "No rush at all.", "Whenever you have time.", "Just for your information, no reply needed.",
        "Low priority.", "Take your time with this one.", "No hurry, just letting you know.",
        "Whenever it's convenient.", "Not urgent.", "Answer whenever, it's not important.", "This can wait.",
        "At your leisure.", "Only if you get a moment.",
    ],
}

OPENERS = ["Hi,", "Hello team,", "Dear support,", "Good morning,", "Hey there,", "To whom it may concern,",
           "Hi support team!", "Greetings,", "Hello,", "Yo,", "Dear Sir or Madam,", "Good afternoon,"]
CLOSERS = ["Thanks.", "Thank you!", "Regards", "Cheers", "Thanks in advance.", "Kind regards.",
           "Much appreciated.", "-- sent from my phone", "thx", "Best wishes.", "Many thanks,", "Ta."]
DISTRACTORS = ["For context, my {o} works fine.", "(My {o} from you has been fine.)",
               "This is not about my {o}.", "I also have your {o}, no problems there.",
               "Unlike my {o}, which is great.", "P.S. the {o} I bought with it is fine."]

BRANDS = ["Nimbus", "Aero", "Pixelon", "Voltra", "Lumen", "Orbit", "Zephyr", "Quartzy", "Echelon", "Novalux",
          "Atlas", "Vertex", "Cobalt", "Sable", "Helix", "Juniper", "Kitewing", "Maplex", "Onyx", "Polaris",
          "Riftly", "Tundra", "Umbra", "Willow"]
KINDS = ["Router", "Pad", "Watch", "Buds", "Speaker", "Cam", "Drive", "Hub", "Lamp", "Scale", "Pen", "Desk",
         "Mixer", "Kettle", "Thermostat", "Tracker", "Monitor", "Keyboard", "Mouse", "Fridge", "Phone", "Vacuum"]
SUFFIXES = ["", " Pro", " Mini", " X2", " 3", " Max", " Lite", " S", " Air", " 2"]


def generate(seed: int = 0) -> TaskData:
    rng = random.Random(f"{NAME}:{seed}")
    bodies = {c: split_templates(rng, f"body-{c}", BODIES[c], 10) for c in CATEGORIES}
    cues = {u: split_templates(rng, f"cue-{u}", CUES[u], 4) for u in URGENCIES}
    openers = split_templates(rng, "open", OPENERS, 4)
    closers = split_templates(rng, "close", CLOSERS, 4)
    distractors = split_templates(rng, "distract", DISTRACTORS, 2)
    brands = split_pool(rng, BRANDS, 8)

    def product(r: random.Random, k: int) -> tuple[str, str]:
        brand = pick(r, brands[k])
        return f"{brand} {pick(r, KINDS)}{pick(r, SUFFIXES)}", brand

    def make(r: random.Random, part: str, idx: int):
        k = 0 if part in ("train", "seen") else 1
        category = CATEGORIES[idx % 5]
        urgency = (["low", "medium"][(idx // 5) % 2] if category == "feedback" else URGENCIES[(idx // 5) % 3])
        body_id, body = pick(r, bodies[category][k])
        cue_id, cue = pick(r, cues[urgency][k])
        prod, brand = product(r, k)
        slots = {"p": prod, "n": r.randint(1000, 99999), "q": r.randint(3, 12),
                 "amt": pick(r, ["$", "€", "£"]) + f"{r.randint(5, 400)}.{r.choice(['00', '99', '49'])}"}
        templates, entities = [body_id, cue_id], [prod, brand]
        text = surface_case(r, body).format(**slots)
        if category != "feedback" and r.random() < 0.3:
            d_id, d = pick(r, distractors[k])
            other, other_brand = product(r, k)
            while other_brand == brand:
                other, other_brand = product(r, k)
            text += " " + d.format(o=other)
            templates.append(d_id)
            entities += [other, other_brand]
        text = f"{cue} {text}" if r.random() < 0.4 else f"{text} {cue}"  # urgency cue before or after
        if r.random() < 0.55:
            o_id, o = pick(r, openers[k])
            text = o + ("\n" if r.random() < 0.4 else " ") + text
            templates.append(o_id)
        if r.random() < 0.45:
            c_id, c = pick(r, closers[k])
            text = text + ("\n" if r.random() < 0.4 else " ") + c
            templates.append(c_id)
        ref = dumps({"category": category, "urgency": urgency, "product": prod})
        fields = {"category": category, "urgency": urgency, "product": prod, "body": body_id, "cue": cue_id}
        return chat(SYSTEM, ("user", text), ("assistant", ref)), tuple(templates), tuple(entities), fields

    return build(NAME, seed, make, 1200, 100, 100, rng=rng, metrics=["json_valid", "json_field_match", "exact_match"],
                 primary_metric="json_field_match",
                 description="Customer message -> compact JSON {category, urgency, product}; 5 categories x 32 "
                             "phrasings (10 held out), held-out urgency cues, openers, closers and product brands.")
