"""tool_call: a system prompt describing 3-5 tools, a user request -> one tool call as plain assistant text:

    <tool_call>{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}</tool_call>

Arguments follow the tool's signature order; some need normalising (a unit default, currency names -> ISO codes,
"7:30 pm" -> "19:30", "four" -> 4). About 20% of the conversations go on: the tool result comes back as a user turn
"Tool result: {...}" and the assistant answers with one templated sentence (then that sentence is the reference).
Unseen: 4 of the 10 request phrasings of every tool, the politeness wrappers, and the key argument values (cities,
restaurants, labels, addresses, subjects, tickers, texts, artists, amounts) never occur in train.
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
    dumps,
    fmt_num,
    pick,
    split_pool,
    split_templates,
    surface_case,
    thousands,
)

NAME = "tool_call"

TOOL_DOCS = {
    "get_weather": "get_weather(city, unit): unit celsius (default) or fahrenheit",
    "convert_currency": "convert_currency(amount, from, to): ISO currency codes",
    "book_table": "book_table(restaurant, people, time): time HH:MM 24h",
    "set_alarm": "set_alarm(time, label): time HH:MM 24h",
    "send_email": "send_email(to, subject)",
    "get_stock_price": "get_stock_price(ticker)",
    "translate": "translate(text, target_language)",
    "search_flights": "search_flights(origin, destination, passengers)",
    "play_music": "play_music(query)",
}
TOOLS = list(TOOL_DOCS)
TWO_TURN_TOOLS = [t for t in TOOLS if t != "translate"]

REQUESTS = {
    "get_weather": [
        "What's the weather like in {city}{unit}?", "weather {city}{unit}",
        "Could you check the current weather in {city}{unit}, please?", "Is it cold in {city} right now{unit}?",
        "How warm is it in {city} today{unit}?", "I'm heading to {city} - what's the weather there{unit}?",
        "Tell me the temperature in {city}{unit}.", "pls get me the weather for {city}{unit}",
        "Do I need a jacket in {city} today{unit}?", "Current conditions in {city}{unit}?",
    ],
    "convert_currency": [
        "Convert {amount} {from} to {to}.", "How much is {amount} {from} in {to}?",
        "what's {amount} {from} worth in {to}",
        "I have {amount} {from}, how many {to} is that?", "Please change {amount} {from} into {to}.",
        "{amount} {from} to {to}?", "Could you tell me what {amount} {from} comes to in {to}?",
        "Quick conversion please: {amount} {from} -> {to}", "If I exchange {amount} {from}, how many {to} do I get?",
        "Need {amount} {from} converted to {to}, thanks",
    ],
    "book_table": [
        "Book a table at {restaurant} for {people} at {time}.",
        "Can you reserve {restaurant} for {people} people tonight at {time}?",
        "I'd like a table for {people} at {restaurant}, {time} please.", "table for {people} @ {restaurant} {time}",
        "Please make a dinner reservation at {restaurant}: {people} guests, {time}.",
        "Reserve {restaurant} at {time} for a party of {people}.",
        "We are {people} and want to eat at {restaurant} at {time}, can you book it?",
        "Could you get us a table at {restaurant} for {time}? There will be {people} of us.",
        "Grab me a booking at {restaurant} for {time}, {people} people",
        "Would it be possible to book {restaurant} for {people} at {time}?",
    ],
    "set_alarm": [
        "Set an alarm for {time} called {label}.", "Wake me up at {time}, label it {label}.", "alarm {time} {label}",
        "Please set a {label} alarm at {time}.", "Can you add an alarm at {time} for {label}?",
        'I need an alarm labelled "{label}" at {time}.', "Alarm at {time} please - it's for {label}.",
        "Could you please create an alarm named {label} for {time}?", "set alarm at {time} for {label} pls",
        "At {time} I need an alarm: {label}.",
    ],
    "send_email": [
        'Send an email to {to} with the subject "{subject}".', "Email {to} about {subject}.",
        "Could you please write to {to}? Subject: {subject}.", "shoot an email to {to} re: {subject}",
        'Drop {to} a quick email titled "{subject}".', "I need to email {to}, the subject should be {subject}.",
        'Please send {to} a message with subject line "{subject}".', "Mail {to} regarding {subject}, thanks.",
        'Can you email {to}? Put "{subject}" as the subject.', "New email to {to}, subject {subject}",
    ],
    "get_stock_price": [
        "What's the price of {ticker}?", "How is {ticker} trading today?", "stock price {ticker}",
        "Can you look up the current share price for {ticker}?", "Give me a quote for {ticker}, please.",
        "Check {ticker} for me.", "Where is {ticker} stock right now?", "I'd like to know the latest {ticker} price.",
        "Ticker {ticker} - current price?", "Could you fetch the stock value of {ticker}?",
    ],
    "translate": [
        'Translate "{text}" into {lang}.', 'How do you say "{text}" in {lang}?', 'What is "{text}" in {lang}?',
        "Please translate the following to {lang}: {text}", '{lang} translation of "{text}", please.',
        'Can you put "{text}" into {lang}?', 'I need "{text}" in {lang}.', "translate to {lang}: {text}",
        'Could you help me say "{text}" in {lang}?', 'Render "{text}" in {lang} for me.',
    ],
    "search_flights": [
        "Find flights from {origin} to {destination} for {n}.",
        "Any flights {origin} to {destination}? We are {n} passengers.",
        "I need to fly from {origin} to {destination}, {n} people.", "flights {origin} -> {destination}, {n} pax",
        "Search for {n} seats from {origin} to {destination}, please.",
        "Could you look for flights to {destination} leaving from {origin}? {n} travellers.",
        "Show me flights into {destination} from {origin} for {n} passengers.",
        "We ({n} of us) want to go from {origin} to {destination}; what flights are there?",
        "Please check flight options {origin} to {destination} for {n} adults.",
        "Is there a flight to {destination} from {origin}? Need {n} seats.",
    ],
    "play_music": [
        "Play some {query}.", "Put on {query}, please.", "I want to listen to {query}.", "play {query}",
        "Could you start playing {query}?", "Queue up {query} for me.", "Let's hear some {query}.",
        "Can you play music by {query}?", "Throw on {query} please", "Would you mind playing {query}?",
    ],
}
PREFIXES = ["Hi! ", "Hey, ", "Hello there. ", "Quick one: ", "Good morning! ", "Excuse me, ", "Assistant, ",
            "Okay so ", "Hmm, ", "Please help: "]
SUFFIXES = [" Thanks!", " Thank you.", " Cheers.", " Much appreciated.", " ty", " Thanks a lot.", " Please.",
            " Appreciate it!"]

CURRENCIES = {"USD": ["USD", "US dollars", "dollars"], "EUR": ["EUR", "euros"],
              "GBP": ["GBP", "British pounds", "pounds"],
              "JPY": ["JPY", "Japanese yen", "yen"], "CHF": ["CHF", "Swiss francs"], "CAD": ["CAD", "Canadian dollars"],
              "SEK": ["SEK", "Swedish kronor"], "NOK": ["NOK", "Norwegian kroner"]}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}
RESTAURANTS = ["Casa Lupo", "The Blue Door", "Sakura House", "Bella Notte", "The Golden Fork", "Le Petit Jardin",
               "Spice Route", "The Old Mill", "Olive & Thyme", "Harbour Grill", "Taqueria Sol", "The Copper Pot",
               "Mama Rosa", "Nordic Table", "The Green Fig", "Saffron Lounge", "Bistro Verde", "The Hungry Fox",
               "Pho Saigon", "Dragon Pearl", "The Salt Cellar", "Trattoria Roma", "Kebab Kingdom", "The Oyster Bar",
               "Fika Cafe", "Little Lisbon", "The Smokehouse", "Chez Marcel", "Noodle Bar 88", "The Wild Boar"]
LABELS = ["gym", "take medicine", "team standup", "call mom", "pick up kids", "water plants", "yoga", "dentist",
          "feed the cat", "laundry", "school run", "piano practice", "catch the bus", "meditation", "walk the dog",
          "check oven", "night shift", "study session", "payroll", "stretch break", "pharmacy", "bake bread",
          "garbage day", "swim class", "book club", "vet appointment", "car service", "language lesson"]
SUBJECTS = ["Quarterly report", "Dinner on Friday", "Invoice question", "Project kickoff", "Holiday plans",
            "Budget review", "Contract draft", "Team offsite", "Lunch tomorrow", "Website launch", "Hiring update",
            "Birthday party", "Lease renewal", "Conference tickets", "Server outage", "Design feedback",
            "Sales figures", "Weekend hike", "New office", "Training schedule", "Client visit", "Tax documents",
            "Product demo", "Moving day", "Book recommendations", "Parking permits", "Board meeting", "Fundraiser"]
DOMAINS = ["example.com", "mail.net", "acme.org", "postbox.io", "corp.example"]
TEXTS = ["good morning", "where is the train station", "thank you very much", "I would like a coffee",
         "the meeting is cancelled", "see you tomorrow", "how much does this cost", "I am lost",
         "the bill, please", "happy birthday", "nice to meet you", "is this seat free", "I need a doctor",
         "what time is it", "the museum opens at nine", "my phone is broken", "can you help me",
         "I love this city", "the soup is cold", "where can I buy tickets", "we are closed on Sundays",
         "please speak slowly", "I have a reservation", "the weather is lovely today", "turn left at the bank",
         "how are you", "good luck with the exam", "it is too expensive"]
LANGUAGES = ["French", "German", "Spanish", "Italian", "Portuguese", "Japanese", "Dutch", "Polish", "Turkish", "Korean"]
ARTISTS = ["The Velvet Foxes", "Luna Park", "Neon Harbor", "Marble Skies", "The Paper Kites", "Juno Rivers",
           "Cold Radio", "Amber Lane", "The Night Owls", "Silver Tides", "Echo Valley", "The Wandering Pines",
           "Mila Stone", "Crimson Avenue", "Static Bloom", "The Lost Keys", "Ivy Hart", "Golden Hour Club",
           "Northern Lights Trio", "Ruby Falls", "The Blue Lanterns", "Oscar Vale", "Glass Animals Jr",
           "Polar Echoes", "Sunday Drivers", "Velvet Thunder", "Kite Runners", "The Lemon Trees"]
CONDITIONS = ["sunny", "cloudy", "rainy", "windy", "snowy", "foggy", "clear"]


def _tickers(rng: random.Random, n: int) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        t = "".join(rng.choice("ABCDEFGHIJKLMNOPRSTUVWXYZ") for _ in range(rng.choice([3, 4, 4])))
        if t not in out:
            out.append(t)
    return out


def _time(r: random.Random, hours: tuple[int, int]) -> tuple[str, str]:
    """(surface, "HH:MM")."""
    h, m = r.randint(*hours), r.choice([0, 0, 15, 30, 45])
    h12, ampm = (h % 12 or 12), ("am" if h < 12 else "pm")
    forms = [f"{h:02d}:{m:02d}", f"{h}:{m:02d}", f"{h12}:{m:02d} {ampm}", f"{h12}:{m:02d}{ampm}",
             f"{h12}:{m:02d} {ampm.upper()}"]
    if m == 0:
        forms += [f"{h12}{ampm}", f"{h12} {ampm}"]
    return r.choice(forms), f"{h:02d}:{m:02d}"


def _count(r: random.Random, lo: int, hi: int) -> tuple[str, int]:
    n = r.randint(lo, hi)
    return (NUMBER_WORDS[n] if r.random() < 0.4 else str(n)), n


def generate(seed: int = 0) -> TaskData:
    rng = random.Random(f"{NAME}:{seed}")
    requests = {t: split_templates(rng, f"req-{t}", REQUESTS[t], 4) for t in TOOLS}
    prefixes = split_templates(rng, "prefix", PREFIXES, 3)
    suffixes = split_templates(rng, "suffix", SUFFIXES, 3)
    pools = {
        "city": split_pool(rng, CITIES, 20), "restaurant": split_pool(rng, RESTAURANTS, 10),
        "label": split_pool(rng, LABELS, 9), "subject": split_pool(rng, SUBJECTS, 9),
        "first": split_pool(rng, FIRST_NAMES, 20), "last": split_pool(rng, LAST_NAMES, 20),
        "ticker": split_pool(rng, _tickers(rng, 90), 30), "text": split_pool(rng, TEXTS, 9),
        "artist": split_pool(rng, ARTISTS, 9),
        # amounts: every integer in 5..4999 is train or unseen, never both
        "amount": split_pool(rng, list(range(5, 5000)), 1600),
    }

    def call_args(r: random.Random, tool: str, k: int) -> tuple[dict, dict, tuple[str, ...]]:
        """(slots for the request text, arguments, key entity values)"""
        P = {name: pool[k] for name, pool in pools.items()}
        if tool == "get_weather":
            city = pick(r, P["city"])
            unit_s, unit = r.choice([("", "celsius")] * 4 + [(" in celsius", "celsius"), (" in Celsius", "celsius"),
                                     (" in fahrenheit", "fahrenheit"), (" in Fahrenheit", "fahrenheit"),
                                     (" in °F", "fahrenheit")])
            return {"city": city, "unit": unit_s}, {"city": city, "unit": unit}, (city,)
        if tool == "convert_currency":
            base = pick(r, P["amount"])
            amount = base if r.random() < 0.75 else round(base + r.choice([0.5, 0.25, 0.99]), 2)
            written = (thousands(int(amount)) if r.random() < 0.5 else str(int(amount))) + (
                "" if amount == int(amount) else f"{amount - int(amount):.2f}"[1:])
            src, dst = r.sample(sorted(CURRENCIES), 2)
            return ({"amount": written, "from": pick(r, CURRENCIES[src]), "to": pick(r, CURRENCIES[dst])},
                    {"amount": amount, "from": src, "to": dst}, (str(base),))
        if tool == "book_table":
            rest = pick(r, P["restaurant"])
            people_s, people = _count(r, 2, 8)
            time_s, time = _time(r, (11, 22))
            return ({"restaurant": rest, "people": people_s, "time": time_s},
                    {"restaurant": rest, "people": people, "time": time}, (rest,))
        if tool == "set_alarm":
            label = pick(r, P["label"])
            time_s, time = _time(r, (5, 23))
            return {"time": time_s, "label": label}, {"time": time, "label": label}, (label,)
        if tool == "send_email":
            first, last = pick(r, P["first"]), pick(r, P["last"])
            to = f"{first.lower()}.{last.lower()}@{pick(r, DOMAINS)}"
            subject = pick(r, P["subject"])
            return {"to": to, "subject": subject}, {"to": to, "subject": subject}, (to, first, last, subject)
        if tool == "get_stock_price":
            ticker = pick(r, P["ticker"])
            written = r.choice([ticker, ticker, f"${ticker}", ticker.lower()])
            return {"ticker": written}, {"ticker": ticker}, (ticker,)
        if tool == "translate":
            text, lang = pick(r, P["text"]), pick(r, LANGUAGES)
            return {"text": text, "lang": lang}, {"text": text, "target_language": lang}, (text,)
        if tool == "search_flights":
            origin, destination = r.sample(P["city"], 2)
            n_s, n = _count(r, 2, 6)
            return ({"origin": origin, "destination": destination, "n": n_s},
                    {"origin": origin, "destination": destination, "passengers": n}, (origin, destination))
        if tool == "play_music":
            artist = pick(r, P["artist"])
            return {"query": artist}, {"query": artist}, (artist,)
        raise KeyError(tool)

    def result_and_summary(r: random.Random, tool: str, a: dict) -> tuple[dict, str]:
        if tool == "get_weather":
            temp = r.randint(-10, 35) if a["unit"] == "celsius" else r.randint(14, 95)
            cond = pick(r, CONDITIONS)
            return {"temp": temp, "condition": cond}, f"It is {temp} degrees {a['unit']} and {cond} in {a['city']}."
        if tool == "convert_currency":
            res = round(a["amount"] * r.uniform(0.05, 150), 2)
            return ({"result": res}, f"{fmt_num(a['amount'])} {a['from']} is {fmt_num(res)} {a['to']}.")
        if tool == "book_table":
            bid = f"BK-{r.randint(1000, 9999)}"
            return ({"status": "confirmed", "booking_id": bid},
                    f"Your table for {a['people']} at {a['restaurant']} is booked for {a['time']} (booking {bid}).")
        if tool == "set_alarm":
            return ({"status": "ok", "alarm_id": r.randint(1, 500)},
                    f"Your {a['label']} alarm is set for {a['time']}.")
        if tool == "send_email":
            return ({"status": "sent", "message_id": f"m-{r.randint(10000, 99999)}"},
                    f'Your email to {a["to"]} with the subject "{a["subject"]}" has been sent.')
        if tool == "get_stock_price":
            price = round(r.uniform(2, 900), 2)
            return ({"ticker": a["ticker"], "price": price, "currency": "USD"},
                    f"{a['ticker']} is trading at {fmt_num(price)} USD.")
        if tool == "search_flights":
            n, cheapest = r.randint(1, 14), r.randint(49, 1400)
            return ({"flights": n, "cheapest_usd": cheapest},
                    f"I found {n} flights from {a['origin']} to {a['destination']}; the cheapest costs {cheapest} USD.")
        if tool == "play_music":
            n = r.randint(5, 60)
            return {"status": "playing", "tracks": n}, f"Now playing {a['query']} ({n} tracks queued)."
        raise KeyError(tool)

    def make(r: random.Random, part: str, idx: int):
        k = 0 if part in ("train", "seen") else 1
        two_turn = idx % 5 == 4
        tool = TWO_TURN_TOOLS[(idx // 5) % len(TWO_TURN_TOOLS)] if two_turn else TOOLS[idx % len(TOOLS)]
        others = r.sample([t for t in TOOLS if t != tool], r.randint(2, 4))
        shown = others + [tool]
        r.shuffle(shown)
        system = ("Tools:\n" + "\n".join(f"- {TOOL_DOCS[t]}" for t in shown) +
                  '\nCall one as <tool_call>{"name": ..., "arguments": {...}}</tool_call>. '
                  "After a tool result, answer in one sentence.")
        slots, args, entities = call_args(r, tool, k)
        t_id, tpl = pick(r, requests[tool][k])
        text = surface_case(r, tpl, 0.06).format(**slots)
        tids = [t_id]
        if r.random() < 0.3:
            p_id, p = pick(r, prefixes[k])
            lower = p.endswith((", ", "so ")) and text[0].isupper() and text[1:2].islower()
            text = p + (text[0].lower() + text[1:] if lower else text)
            tids.append(p_id)
        if r.random() < 0.25:
            s_id, s = pick(r, suffixes[k])
            text += s
            tids.append(s_id)
        call = "<tool_call>" + dumps({"name": tool, "arguments": args}) + "</tool_call>"
        turns = [("user", text), ("assistant", call)]
        fields = {"tool": tool, "arguments": args, "shown": shown, "two_turn": two_turn, "request_slots": slots}
        if two_turn:
            result, summary = result_and_summary(r, tool, args)
            turns += [("user", "Tool result: " + dumps(result)), ("assistant", summary)]
            fields["result"] = result
        return chat(system, *turns), tuple(tids), entities, fields

    return build(NAME, seed, make, 600, 100, 100, rng=rng, metrics=["tool_call_match", "exact_match", "rouge_l"],
                 # a call is scored by its name and each argument (the two-turn answers by exact match), the measure
                 # tool-calling benchmarks use (BFCL's AST check, per argument); exact match of the whole text is
                 # reported beside it
                 primary_metric="tool_call_match",
                 description="System prompt with 3-5 tools + request -> one <tool_call>{json}</tool_call> as plain "
                             "text; 20% two-turn (tool result as a user turn, one-sentence templated answer); 9 "
                             "tools x 10 phrasings (4 held out), held-out argument values.")
