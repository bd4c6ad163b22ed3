"""A generated, varied dataset for the memory extraction adapter (issue 14 item 6).

Templates over names, places, jobs, employers, family, pets, likes, dislikes, hobbies,
allergies, ages, birthdays and plans, combined one to three to a message with greetings
and asides, plus distractors that state no fact about the speaker: questions and requests
that mention the same kinds of things, hypotheticals, other people's facts and chit-chat.
Each item is ``{"text": ..., "facts": [{"attribute", "value"}, ...], "kind": ...}`` with the
labels the memory store keeps (the conventions of ``memory.extract.FEW_SHOT``: a family
fact names the relation, a pet fact the animal, every value is words of the message).

This set only trains. The adapter's figures come from a labelled set written by hand,
separately (``bench/data/quality/``): other people's phrasings, not these templates.
"""

from __future__ import annotations

import random
from typing import Any, Callable

NAMES = (
    "Ana Ben Chiara Dev Elif Farah Gus Hiro Ines Jonas Kemi Lars Maya Nico Omar Paula Quinn Rosa Sami Tariq Uma "
    "Viktor Wren Xavier Yara Zeke Amir Bea Carlos Dana Emeka Freya Goran Hana Ivo Jade Kofi Lena Mateo Noor Olga "
    "Pedro Rania Stefan Tomoko Ugo Vera Wiktor Yusuf Zainab Aoife Bruno Cleo Diego Esme Felix Greta Hugo Isla Jun "
    "Kira Leon Mina Nils Orla Pavel Rhea Soren Thea Ulla Vikram Willa Yosef Zora"
).split()
PLACES = (
    "Manchester Cardiff Dublin Leicester Exeter Dundee Norwich Oxford Cambridge Bath York Derby Hull Swansea Belfast "
    "Toronto Montreal Seattle Chicago Boston Portland Madrid Seville Valencia Milan Turin Naples Lyon Marseille Munich "
    "Hamburg Vienna Zurich Prague Krakow Warsaw Oslo Bergen Helsinki Tallinn Riga Athens Istanbul Cairo Lagos Accra "
    "Mumbai Pune Delhi Osaka Kyoto Seoul Melbourne Perth Auckland Wellington Santiago Lima Quito Bogota"
).split() + ["New York", "San Diego", "Cape Town", "Hong Kong", "Buenos Aires", "Mexico City", "Tel Aviv", "Rio de Janeiro"]
JOBS = (
    "plumber,architect,nurse,vet,lawyer,pilot,baker,electrician,journalist,librarian,physiotherapist,carpenter,"
    "data analyst,web designer,bus driver,social worker,pharmacist,firefighter,police officer,translator,"
    "music teacher,primary school teacher,civil engineer,mechanic,midwife,optician,florist,tattoo artist,"
    "student,PhD student,sales manager,receptionist,lab technician,gardener,hairdresser,photographer,"
    "project manager,solicitor,cleaner,radiographer,postman,surveyor,copywriter,game developer,dentist,chef"
).split(",")
EMPLOYERS = (
    "Google,Microsoft,Barclays,Sainsbury's,IKEA,Boots,Aldi,Lidl,BT,Vodafone,Unilever,Shell,Rolls-Royce,Airbus,"
    "Accenture,KPMG,the BBC,the council,Network Rail,Pret,Starbucks,Spotify,Nike,Oxfam,the university,"
    "a local school,a small startup,the city hospital"
).split(",")
RELATIONS = (
    "sister brother mum dad mother father wife husband partner girlfriend boyfriend son daughter grandma grandpa "
    "aunt uncle cousin niece nephew fiance stepdad stepmum"
).split()
ANIMALS = ["dog", "cat", "puppy", "kitten", "rabbit", "hamster", "parrot", "tortoise", "goldfish", "guinea pig",
           "ferret", "horse", "gecko", "budgie", "labrador", "spaniel", "terrier", "snake"]
PET_NAMES = (
    "Max Bella Milo Coco Teddy Poppy Oscar Daisy Rocky Ziggy Pudding Mochi Noodle Peanut Waffles Shadow Juniper "
    "Bramble Toffee Pumpkin Olive Mango Sprout Bagel Kiwi Rolo Domino Fudge Pebble Scout"
).split()
FOODS = (
    "sushi,pizza,curry,dark chocolate,ramen,tacos,olives,cheese,strawberries,pasta,dumplings,avocado,lemon cake,"
    "pho,falafel,ice cream,black coffee,herbal tea,red wine,craft beer,porridge,spicy noodles,blue cheese,"
    "pineapple,garlic,cucumber,broccoli,liquorice,marmite,oysters,sprouts,tofu,beetroot,coriander"
).split(",")
THINGS = (
    "jazz,country music,heavy metal,opera,musicals,sci-fi novels,true crime podcasts,crosswords,anime,"
    "reality TV,cricket,tennis,formula one,basketball,horror movies,poetry,museums,thunderstorms,rainy days,"
    "long walks,camping,karaoke,techno,audiobooks,documentaries,the beach,snow,gardening,fishing"
).split(",")
HOBBIES = (
    "climbing,running,swimming,cycling,painting,knitting,baking,yoga,surfing,photography,woodwork,rowing,"
    "skateboarding,birdwatching,gaming,singing,dancing,sailing,archery,fencing,boxing,pilates,calligraphy,"
    "crochet,chess,the piano,the violin,the drums,the cello"
).split(",")
ALLERGENS = (
    "peanuts,tree nuts,shellfish,eggs,milk,soy,wheat,sesame,strawberries,kiwi,penicillin,aspirin,ibuprofen,"
    "cats,dogs,horses,dust mites,pollen,grass,wasp stings,latex,mould,celery,mustard"
).split(",")
MONTHS = "January February March April May June July August September October November December".split()
SHORT_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
PLANS = (
    "learn Spanish,run a half marathon,visit Iceland,buy a flat,learn to drive,start a business,climb Kilimanjaro,"
    "get a dog,go back to uni,write a novel,move to Canada,take up boxing,walk the Camino,learn to code,"
    "cycle to Paris,retrain as a teacher"
).split(",")
OTHER = ("vegetarian", "vegan", "pescatarian", "gluten free", "teetotal", "left-handed", "colour blind", "a night owl")


def _ordinal(d: int) -> str:
    return f"{d}{'th' if 11 <= d % 100 <= 13 else {1: 'st', 2: 'nd', 3: 'rd'}.get(d % 10, 'th')}"


def _date(r: random.Random) -> str:
    d, m = r.randint(1, 28), r.randrange(12)
    return r.choice((
        f"{d} {MONTHS[m]}", f"{MONTHS[m]} {d}", f"{_ordinal(d)} of {MONTHS[m]}", f"{MONTHS[m]} {_ordinal(d)}",
        f"{d} {SHORT_MONTHS[m]}", f"the {_ordinal(d)} of {MONTHS[m]}",
    )).removeprefix("the ")


# a clause: (text, [(attribute, value)]); templates draw their own fillers
Clause = tuple[str, list[tuple[str, str]]]


def _name(r: random.Random) -> Clause:
    n = r.choice(NAMES)
    return r.choice((f"I'm {n}", f"my name is {n}", f"I am {n}", f"call me {n}", f"it's {n} here",
                     f"{n} here", f"my name's {n}", f"everyone calls me {n}")), [("name", n)]


def _location(r: random.Random) -> Clause:
    p = r.choice(PLACES)
    return r.choice((f"I live in {p}", f"I'm based in {p}", f"I'm from {p}", f"I moved to {p} last year",
                     f"I've been living in {p} for a while", f"home for me is {p}", f"I grew up and still live in {p}",
                     f"I just relocated to {p}", f"I'm in {p} these days")), [("location", p)]


def _age(r: random.Random) -> Clause:
    a = str(r.randint(16, 88))
    return r.choice((f"I'm {a}", f"I am {a} years old", f"I turned {a} this year", f"I'm {a} years old",
                     f"I just hit {a}")), [("age", a)]


def _job(r: random.Random) -> Clause:
    j = r.choice(JOBS)
    art = "an" if j[0] in "aeiou" else "a"
    return r.choice((f"I work as {art} {j}", f"I'm {art} {j}", f"I'm {art} {j} by trade", f"I've been {art} {j} for years",
                     f"my job is {j}", f"I retrained as {art} {j}", f"I'm working as {art} {j} now",
                     f"I've been {art} {j} for {r.randint(2, 30)} years")), [("job", j)]


def _employer(r: random.Random) -> Clause:
    e = r.choice(EMPLOYERS)
    value = e.removeprefix("the ").removeprefix("a ")
    return r.choice((f"I work at {e}", f"I work for {e}", f"I just got a job at {e}", f"I've been at {e} since 2019",
                     f"I'm employed by {e}")), [("employer", value)]


def _family(r: random.Random) -> Clause:
    rel, n = r.choice(RELATIONS), r.choice(NAMES)
    if r.random() < 0.25:
        kids = r.sample(NAMES, r.randint(2, 3))
        word = r.choice(("kids", "children"))
        listed = ", ".join(kids[:-1]) + " and " + kids[-1]
        return f"my {word} are {listed}", [("family", f"child {k}") for k in kids]
    if r.random() < 0.15:
        rel2, (a, b) = r.choice(("sons", "daughters", "sisters", "brothers", "cousins")), r.sample(NAMES, 2)
        return f"my {rel2} are called {a} and {b}", [("family", f"{rel2[:-1]} {a}"), ("family", f"{rel2[:-1]} {b}")]
    if r.random() < 0.5:
        return r.choice((f"my {rel} is called {n}", f"my {rel} {n} lives with me", f"I have a {rel} named {n}",
                         f"I've got a {rel}, {n}", f"me and my {rel} {n} are close")), [("family", f"{rel} {n}")]
    return r.choice((f"I have a {rel}", f"my {rel} lives nearby", f"I'm visiting my {rel} this weekend",
                     f"my {rel} is a great cook", f"I've got a {rel} who lives abroad")), [("family", rel)]


def _pet(r: random.Random) -> Clause:
    a, n = r.choice(ANIMALS), r.choice(PET_NAMES)
    if r.random() < 0.2:
        return r.choice((f"I have a {a}", f"I've got a {a} at home", f"we just adopted a {a}")), [("pet", a)]
    return r.choice((f"I have a {a} called {n}", f"my {a} {n} is asleep on my lap", f"I've got a {a} named {n}",
                     f"my {a}'s name is {n}", f"I adopted a {a} called {n}", f"I live with my {a} {n}")), [("pet", f"{a} {n}")]


def _likes(r: random.Random) -> Clause:
    x = r.choice(FOODS + THINGS)
    return r.choice((f"I love {x}", f"I really like {x}", f"I'm a big fan of {x}", f"I'm obsessed with {x}",
                     f"I adore {x}", f"I could eat {x} every day" if x in FOODS else f"I'm really into {x}",
                     f"my favourite thing is {x}")), [("likes", x)]


def _dislikes(r: random.Random) -> Clause:
    x = r.choice(FOODS + THINGS)
    return r.choice((f"I hate {x}", f"I can't stand {x}", f"I don't like {x}", f"I really dislike {x}",
                     f"I've never liked {x}", f"I'm not a fan of {x}")), [("dislikes", x)]


def _hobby(r: random.Random) -> Clause:
    h = r.choice(HOBBIES)
    verb = "play" if h.startswith("the ") or h in ("chess",) else "do"
    return r.choice((f"I {verb} {h} at weekends", f"my hobby is {h}", f"I've taken up {h}", f"I spend my evenings on {h}",
                     f"I {verb} {h} in my free time")), [("hobby", h.removeprefix("the "))]


def _allergy(r: random.Random) -> Clause:
    a = r.choice(ALLERGENS)
    return r.choice((f"I'm allergic to {a}", f"I have an allergy to {a}", f"I am allergic to {a}",
                     f"I react badly to {a}, it's an allergy")), [("allergy", a)]


def _birthday(r: random.Random) -> Clause:
    d = _date(r)
    return r.choice((f"my birthday is {d}", f"my birthday's on {d}", f"I was born on {d}", f"I celebrate my birthday on {d}")), [("birthday", d)]


def _plan(r: random.Random) -> Clause:
    p = r.choice(PLANS)
    return r.choice((f"I'm planning to {p}", f"I'm going to {p} next year", f"my goal is to {p}",
                     f"I've decided to {p}")), [("plan", p)]


def _other(r: random.Random) -> Clause:
    o = r.choice(OTHER)
    since = r.randint(1995, 2022)
    return r.choice((f"I'm {o}", f"I am {o}", f"I've been {o} for years", f"I've been {o} since {since}")), [("other", o)]


FACT_CLAUSES: tuple[Callable[[random.Random], Clause], ...] = (
    _name, _location, _age, _job, _employer, _family, _pet, _likes, _dislikes, _hobby, _allergy, _birthday, _plan, _other,
)

OPENERS = ("", "", "", "hi! ", "hey, ", "hello, ", "so ", "well, ", "oh and ", "btw ", "fun fact: ", "ok so ")
ASIDES = ("", "", "", " lol", " :)", " haha", ", if that helps", ", just so you know", " by the way")
JOINERS = (". ", ", and ", " and ", ". Also ", "! ", "; ")


# ------------------------------------------------------------------ distractors (no fact about the speaker)
def _question(r: random.Random) -> str:
    p, f, j, a = r.choice(PLACES), r.choice(FOODS), r.choice(JOBS), r.choice(ANIMALS)
    n, h, rel = r.choice(NAMES), r.choice(HOBBIES), r.choice(RELATIONS)
    return r.choice((
        f"what's the weather like in {p}?", f"do you like {f}?", f"is {p} nice in spring?", f"how do I become a {j}?",
        f"what should I feed a {a}?", f"who is {n}?", f"can you tell me about {h}?", f"where is {p} exactly?",
        f"what's a good present for my {rel}?", f"how old do you have to be to adopt a {a}?", f"is {f} healthy?",
        f"what time is it in {p} right now?", f"how much does a {j} earn?", f"any tips for learning {h}?",
        f"do {a}s make good pets?", f"are you allergic to anything?", f"what's your name?", f"where do you live?",
        f"when is {n}'s birthday?", f"have you ever been to {p}?", f"should I try {h}?", f"why do people hate {f}?",
    ))


def _request(r: random.Random) -> str:
    p, f, j, a, h = r.choice(PLACES), r.choice(FOODS), r.choice(JOBS), r.choice(ANIMALS), r.choice(HOBBIES)
    return r.choice((
        f"find me a recipe with {f}", f"recommend a hotel in {p}", f"write a poem about a {a}", f"tell me a joke about a {j}",
        f"list some famous people from {p}", f"explain how {h} works", f"please translate 'I love {f}' into French",
        f"give me three facts about {p}", f"suggest a name for a {a}", f"plan a weekend in {p} for me",
        f"help me write a cover letter for a {j} job", f"make me a shopping list with {f} on it",
    ))


def _hypothetical(r: random.Random) -> str:
    p, j, a = r.choice(PLACES), r.choice(JOBS), r.choice(ANIMALS)
    return r.choice((
        f"if I were a {j} I'd be exhausted", f"I wish I lived in {p}", f"imagine if I had a {a}",
        f"maybe I'll move to {p} one day", f"I'd love to be a {j}", f"suppose I moved to {p}, what then?",
        f"I might get a {a} at some point", f"what if I quit and became a {j}?",
    ))


def _third_party(r: random.Random) -> tuple[str, list[tuple[str, str]]]:
    """Someone else's facts; only the relation itself is the speaker's (family), and a friend is not family."""
    n, p, j, f = r.choice(NAMES), r.choice(PLACES), r.choice(JOBS), r.choice(FOODS)
    rel = r.choice(RELATIONS)
    art = "an" if j[0] in "aeiou" else "a"
    if r.random() < 0.5:
        who = r.choice(("my friend", "my neighbour", "my boss", "my colleague", "my flatmate"))
        return r.choice((
            f"{who} lives in {p}", f"{who} {n} works as {art} {j}", f"{who} is allergic to {f}", f"{who} loves {f}",
            f"{n} lives in {p}", f"{n} is {art} {j}", f"{n} has a cat", f"she works at {r.choice(EMPLOYERS)}",
            f"he moved to {p} last month", f"they hate {f}",
        )), []
    return r.choice((
        f"my {rel} lives in {p}", f"my {rel} works as {art} {j}", f"my {rel} is allergic to {f}", f"my {rel} loves {f}",
        f"my {rel} just moved to {p}", f"my {rel} hates {f}",
    )), [("family", rel)]


def _no_fact(r: random.Random) -> str:
    """The speaker talks about themselves but says nothing the memory keeps (a visit is not where they live,
    a number of years is not an age, what they did today is not what they like)."""
    p, f, a, n, h = r.choice(PLACES), r.choice(FOODS), r.choice(ANIMALS), r.choice(NAMES), r.choice(HOBBIES)
    k = r.randint(2, 40)
    return r.choice((
        "I reckon we'll get snow by Friday", "I had a long day at work", f"I went to {p} last weekend",
        f"I just got back from {p}", f"I watched a documentary about {a}s", f"I saw a {a} in the park today",
        f"I read somewhere that {f} is good for you", f"I need to buy {f} on the way home", "I forgot my keys again",
        f"I met {n} for coffee yesterday", "I have a meeting at three", f"I waited {k} minutes for the bus",
        f"I've had this phone for {k} months", f"I paid {k} quid for it", f"I was chatting to {n} about {p}",
        "I'm not sure what to cook tonight",
        f"I tried {h} once and hated every minute",
        f"I booked a table for {k // 5 + 2} at eight", f"I'll be in {p} for a conference next week",
        f"I ordered {f} but they brought something else", "I slept badly last night", "I'm running late again",
        f"I've lost count of how many {f} I've eaten", "I can't find the remote", f"I drove past {p} on the way",
    ))


def _chitchat(r: random.Random) -> str:
    return r.choice((
        "lol that's funny", "thanks, that helps a lot", "okay, cool cool", "hmm not sure about that", "good morning!",
        "that's a great idea", "nice one", "haha no way", "the weather is lovely today", "it's been a long week",
        "sounds good to me", "wow ok", "fair enough", "I see", "right, makes sense", "I'm tired today", "I'm so happy right now",
        "that was interesting", "I don't know", "I agree", "I think so too", "it's raining again", "good night",
    ))


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def _statement(r: random.Random) -> dict[str, Any]:
    makers = r.sample(FACT_CLAUSES, r.choices((1, 2, 3), weights=(5, 4, 2))[0])
    clauses = [m(r) for m in makers]
    if r.random() < 0.4:  # a fact next to a question, someone else's fact or a remark that keeps nothing
        extra = r.random()
        if extra < 0.3:
            clauses.append((_question(r), []))
        elif extra < 0.6:
            clauses.append(_third_party(r))
        else:
            clauses.insert(r.randrange(len(clauses) + 1), (_no_fact(r), []))
    text = r.choice(OPENERS) + clauses[0][0]
    for c, _ in clauses[1:]:
        joiner = r.choice(JOINERS)
        text += joiner + (_cap(c) if joiner.rstrip().endswith((".", "!")) or joiner == ". " else c)
    if not text.endswith("?"):
        text += r.choice(ASIDES) + r.choice((".", "", "!", "."))
    if r.random() < 0.7:
        text = _cap(text)
    facts = [(a, v) for _, fs in clauses for a, v in fs]
    return {"text": text, "facts": facts, "kind": "statement"}


def generate(n: int, *, seed: int = 0, distractors: float = 0.5) -> list[dict[str, Any]]:
    """``n`` labelled messages, a share ``distractors`` of them with no fact about the speaker (or
    only the relation, for another person's facts). The same seed gives the same items."""
    r = random.Random(seed)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(out) < n:
        if r.random() < distractors:
            kind = r.choice(("question", "question", "request", "hypothetical", "third_party", "chitchat",
                             "no_fact", "no_fact", "no_fact"))
            if kind == "third_party":
                text, facts = _third_party(r)
            else:
                text = {"question": _question, "request": _request, "hypothetical": _hypothetical, "chitchat": _chitchat,
                        "no_fact": _no_fact}[kind](r)
                facts = []
            item = {"text": _cap(text) if r.random() < 0.7 else text, "facts": facts, "kind": kind}
        else:
            item = _statement(r)
        if item["text"] in seen:
            continue
        seen.add(item["text"])
        item["facts"] = [{"attribute": a, "value": v} for a, v in item["facts"]]
        out.append(item)
    return out
