"""Answers about the person, from what they told shoal — never from the model's imagination.

A small model asked "what do you remember about me?" tells the user's facts
as its own life or invents a biography (DESIGN.md §5). So questions about
what shoal knows are recognised here (``memory_question``, in English,
Portuguese, Spanish, French and German, with casual and follow-up forms) and
answered from the stored facts (``answer``): deterministic text in the
person's language, the values exactly as they wrote them, each with when
they said it (the reply's ``recalled`` memories carry their words and the
message), and an honest "I don't know yet" when nothing is stored.

A question that only *mentions* the person ("is it safe to eat almonds if I'm
allergic to peanuts?", "should I move to Bristol?") asks for advice: the
model answers those.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import date
from typing import Iterable, Sequence

ALL = "all"


@dataclass(frozen=True, slots=True)
class Question:
    attribute: str
    #: a detail narrowing it: the animal ("cat") or the relation ("sister")
    detail: str | None = None
    #: the language to answer in (en, pt, es, fr, de)
    lang: str = "en"
    #: further kinds asked for in the same breath ("what's my name and job?")
    more: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Fact:
    """A stored fact as the answer needs it: kind, value, the person's own words, where and when it came from."""

    attribute: str
    value: str
    text: str
    source: str | None = None
    #: when it was said (unix time); None: in this very message
    when: float | None = None


# ------------------------------------------------------------------ is it a question about what shoal knows?
_FIRST = re.compile(r"\b(?:i|i'm|im|i've|my|me|mine|myself)\b", re.I)
_ASKING = re.compile(
    r"\?\s*$|^\s*(?:and\s+|so\s+|ok\s+|okay\s+|wait\s+|remind me\W*\s*)?(?:what|what's|whats|where|where's|who|who's|how|when|when's|which|"
    r"whereabouts|do|does|did|am|have|has|is|are|can|could|tell me|any idea)\b",
    re.I,
)
#: asking shoal to recall: "do you remember…", "did I tell you…", "what did I say…", "what have you got on me"
_RECALL = re.compile(
    r"\b(?:remember|recall|remind me|know|knows|stored|saved|on file|on record|got on me|told you|tell you|mention(?:ed)?|"
    r"did i say|i said|have i said|according to you|in your memory|you have (?:on|about) me)\b",
    re.I,
)
#: a question about a stable fact, asked directly: "where do I live?", "what's my name?", "how old am I?"
_DIRECT = re.compile(
    r"\b(?:where (?:do|did) i (?:live|work|stay)|whereabouts do i live|where am i (?:living|based|from)|"
    r"what(?:'s| is| are|s)? my\b|what am i called|what do i (?:do|work as)\b|how old am i|am i (?:allergic|vegetarian|vegan|married)|"
    r"what am i allergic|do i have (?:a|an|any)\b|who do i work for|which company am i|when(?:'s| is) my|what (?:food|foods|music|things?) do i|"
    r"what do i (?:like|love|hate|enjoy|dislike)|who am i|where am i going|how old i am|where i (?:live|work)|anything i can'?t eat)",
    re.I,
)
#: asking for advice or an opinion about themselves: for the model, not a memory answer
_ADVICE = re.compile(
    r"\b(?:should i|shall i|can i|could i|would i|will i|is it (?:safe|ok|okay|wise|bad|good)|if i'm|if i am|if i|"
    r"do you think|what (?:should|could|would) i|how (?:do|can|should) i|what can i|any (?:tips|ideas|advice)|"
    r"recommend|suggest|good name for|call my new)\b",
    re.I,
)

_ALL = re.compile(
    r"\babout (?:me|myself)\b|\bof me\b|\bon me\b|\bwho am i\b|\bwhat (?:have|did) i (?:told|tell) you\b|\beverything i told you\b",
    re.I,
)

#: (attribute, words that name it); relations and animals first: "my wife's name" is about the wife
_ATTRIBUTE_WORDS: list[tuple[str, re.Pattern[str]]] = [
    ("family", re.compile(
        r"\b(?P<d>wife|husband|partner|son|daughter|sons|daughters|kids|children|child|mum|mom|mother|dad|father|brother|sister|"
        r"siblings|girlfriend|boyfriend|fianc[ée]e?|grandkids|grandchildren|grandson|granddaughter|niece|nephew|twins)(?:'s|s)?\b",
        re.I,
    )),
    ("pet", re.compile(
        r"\b(?P<d>cat|cats|dog|dogs|puppy|kitten|pet|pets|parrot|rabbit|hamster|horse|fish|bird|ferret|tortoise|animal|animals)(?:'s)?\b",
        re.I,
    )),
    ("allergy", re.compile(r"\ballerg|\bcan'?t eat\b|\bintoleran", re.I)),
    ("birthday", re.compile(r"\bbirthday|\bb-?day\b|\bborn\b", re.I)),
    ("age", re.compile(r"\bhow old\b|\bmy age\b|\bage\b", re.I)),
    ("employer", re.compile(r"\bwhere (?:do |did )?i work\b|\bwho (?:do|did) i work for\b|\bcompany\b|\bemployer\b|\bwork for\b|\bwork at\b", re.I)),
    ("job", re.compile(r"\bjob\b|\bwork as\b|\bdo for (?:a living|work)\b|\boccupation\b|\bprofession\b|\bcareer\b|\bwhat do i do\b", re.I)),
    ("location", re.compile(r"\blive\b|\bliving\b|\bhome\b|\bcity\b|\btown\b|\bmoved\b|\bwhereabouts\b|\bbased\b|\breside\b", re.I)),
    ("plan", re.compile(r"\bplan|\bplanning\b|\bgoing next\b|\bnext (?:week|month|year)\b|\bwhere am i going\b|\btrip\b", re.I)),
    ("dislikes", re.compile(r"\bhate\b|\bdislike|\bdon'?t like\b|\bcan'?t stand\b", re.I)),
    ("hobby", re.compile(r"\bhobb(?:y|ies)\b|\bfor fun\b|\bfree time\b|\bspare time\b", re.I)),
    ("likes", re.compile(r"\blike\b|\blove\b|\benjoy\b|\bfavou?rite\b|\bfan of\b", re.I)),
    ("other", re.compile(r"\bvegetarian\b|\bvegan\b|\bpescatarian\b|\bcoeliac\b|\bdiabetic\b", re.I)),
    ("name", re.compile(r"\bname\b|\bcalled\b|\bcall me\b", re.I)),
]

# the same questions in Portuguese, Spanish, French and German: (lang, attribute, pattern)
_OTHER_LANGUAGES: list[tuple[str, str, re.Pattern[str]]] = [
    ("pt", ALL, re.compile(r"\bo que (?:é que )?(?:sabes|sabe|você sabe|lembras|você lembra) (?:sobre|de) mim\b", re.I)),
    ("pt", "location", re.compile(r"\bonde (?:é que )?(?:eu )?(?:moro|vivo)\b", re.I)),
    ("pt", "name", re.compile(r"\bcomo (?:é que )?(?:eu )?me chamo\b|\bqual (?:é )?o meu nome\b", re.I)),
    ("pt", "job", re.compile(r"\b(?:qual (?:é )?o meu (?:trabalho|emprego|profiss[aã]o)|em que (?:é que )?(?:eu )?trabalho)\b", re.I)),
    ("pt", "pet", re.compile(r"\bcomo se chama(?:m)? (?:o meu|a minha|os meus|as minhas) (?P<d>c[aã]o|cachorro|gato|gata|gatos|c[aã]es)\b", re.I)),
    ("es", ALL, re.compile(r"\bqu[eé] (?:sabes|recuerdas) (?:de|sobre) m[ií]\b", re.I)),
    ("es", "name", re.compile(r"\bc[oó]mo me llamo\b|\bcu[aá]l es mi nombre\b", re.I)),
    ("es", "location", re.compile(r"\bd[oó]nde vivo\b", re.I)),
    ("es", "job", re.compile(r"\ben qu[eé] trabajo\b|\bcu[aá]l es mi trabajo\b|\ba qu[eé] me dedico\b", re.I)),
    ("es", "pet", re.compile(r"\bc[oó]mo se llama(?:n)? mis? (?P<d>perro|perra|gato|gata|perros|gatos)\b", re.I)),
    ("fr", ALL, re.compile(r"\bqu'?est-ce que tu sais (?:de|sur) moi\b|\bque sais-tu (?:de|sur) moi\b|\btu sais quoi (?:de|sur) moi\b", re.I)),
    ("fr", "location", re.compile(r"\bo[uù] (?:est-ce que )?j'?habite\b|\bo[uù] je vis\b", re.I)),
    ("fr", "name", re.compile(r"\bcomment je m'?appelle\b|\bc'est quoi mon nom\b|\bquel est mon nom\b", re.I)),
    ("fr", "job", re.compile(r"\bquel est mon (?:travail|m[ée]tier)\b|\bqu'?est-ce que je fais (?:dans la vie|comme travail)\b", re.I)),
    ("fr", "pet", re.compile(r"\bcomment s'?appelle(?:nt)? (?:mon|ma|mes) (?P<d>chat|chats|chien|chiens|chatte)\b", re.I)),
    ("de", ALL, re.compile(r"\bwas wei(?:ß|ss)t du (?:über|von) mir\b|\bwas wei(?:ß|ss)t du über mich\b", re.I)),
    ("de", "name", re.compile(r"\bwie hei(?:ß|ss)e ich\b|\bwie ist mein name\b", re.I)),
    ("de", "location", re.compile(r"\bwo wohne ich\b|\bwo lebe ich\b", re.I)),
    ("de", "job", re.compile(r"\bwas (?:ist mein beruf|arbeite ich|mache ich beruflich)\b", re.I)),
    ("de", "pet", re.compile(r"\bwie hei(?:ß|ss)(?:t|en) meine? (?P<d>hund|hunde|katze|katzen|kater)\b", re.I)),
]
_FOREIGN_DETAIL = {
    "cão": "dog", "cao": "dog", "cachorro": "dog", "gato": "cat", "gata": "cat", "gatos": "cat", "cães": "dog", "caes": "dog",
    "perro": "dog", "perra": "dog", "perros": "dog", "gatas": "cat", "chat": "cat", "chats": "cat", "chatte": "cat",
    "chien": "dog", "chiens": "dog", "hund": "dog", "hunde": "dog", "katze": "cat", "katzen": "cat", "kater": "cat",
    "chienne": "dog", "gatas": "cat", "perras": "dog", "cachorros": "dog",
}

#: a follow-up to a memory question: "and the cats?", "and my husband's name?", "what about my job?"
_FOLLOW_UP = re.compile(r"^\s*(?:and|what about|how about|und|e|y|et)\s+(?:the|my|mein[e]?|o|a|os|as|el|la|los|las|le|mes|mon|ma)?\s*[\w' ]{2,30}\??\s*$", re.I)


def is_follow_up(text: str) -> bool:
    """"and the cats?": short, and only a memory question if the message before was one."""
    return bool(_FOLLOW_UP.match(text))


def memory_question(text: str, previous: str | None = None) -> Question | None:
    """The question about the person this message asks, if it asks one (a statement, advice or a
    question about the world: None). ``previous`` is the person's message before, for follow-ups."""
    for lang, attribute, pattern in _OTHER_LANGUAGES:
        m = pattern.search(text)
        if m:
            d = (m.groupdict().get("d") or "").lower()
            return Question(attribute, _FOREIGN_DETAIL.get(d, d) or None, lang)
    if not _ASKING.search(text):
        return None
    follow = previous is not None and _FOLLOW_UP.match(text) and memory_question(previous) is not None
    if not follow:
        if not _FIRST.search(text) or _ADVICE.search(text):
            return None
        if not (_RECALL.search(text) or _DIRECT.search(text)):
            return None
    if _ALL.search(text) and not any(p.search(text) for a, p in _ATTRIBUTE_WORDS if a != "name"):
        return Question(ALL)
    asked: list[tuple[str, str | None]] = []
    for attribute, pattern in _ATTRIBUTE_WORDS:
        m = pattern.search(text)
        if m and all(a != attribute for a, _ in asked):
            d = (m.groupdict().get("d") or "").lower().removesuffix("'s")
            asked.append((attribute, d or None))
    if asked:
        attribute, d = asked[0]
        # "my wife's name" asks about the wife; "my name and job" asks for both
        more = tuple(a for a, _ in asked[1:] if a != "name") if attribute in ("family", "pet") else tuple(a for a, _ in asked[1:])
        return Question(attribute, d, more=more if re.search(r"\band\b|,|&", text) else ())
    return Question(ALL) if _RECALL.search(text) and re.search(r"\b(?:me|myself)\b", text, re.I) else None


# ------------------------------------------------------------------ the answer
def _matches(q: Question, f: Fact) -> bool:
    if q.attribute == ALL:
        return True
    if f.attribute in q.more:
        return True
    also = {"likes": ("hobby",), "hobby": ("likes",), "job": ("employer",), "employer": ("job",)}
    if f.attribute != q.attribute and f.attribute not in also.get(q.attribute, ()):
        return False
    d = q.detail
    if not d or d in ("pet", "pets", "animal", "animals"):
        return True
    # "chat Moka", "Hund Bruno": the animal in the person's language is the one asked about in English terms
    words = " ".join(_FOREIGN_DETAIL.get(w, w) for w in re.findall(r"[^\W\d_]+", f"{f.value} {f.text}".lower()))
    if d in ("kids", "children", "child", "twins", "grandkids", "grandchildren"):
        return bool(re.search(r"\b(?:son|daughter|child|kid|kids|children|boy|girl|twin|grand\w+)s?\b", words))
    if d in ("siblings",):
        return bool(re.search(r"\b(?:brother|sister|sibling)s?\b", words))
    return d.rstrip("s") in words


_PHRASES = {
    "en": {
        "name": "your name is {v}", "location": "you live in {v}", "age": "you're {v}", "job": "you work as {a}{v}",
        "employer": "you work at {v}", "likes": "you like {v}", "dislikes": "you don't like {v}", "hobby": "you enjoy {v}",
        "allergy": "you're allergic to {v}", "birthday": "your birthday is {v}", "plan": "you plan: {v}",
        "pet_named": "you have a {kind} called {name}", "family_named": "your {kind} is called {name}",
        "have": "you have {v}", "other": "you told me: {v}",
        "all": "Here's what I remember about you:", "unknown": "I don't know {what} yet — you haven't told me. If you'd like me to remember, just tell me.",
        "today": "you told me today", "yesterday": "you told me yesterday", "on": "you told me on {day}", "just": "you just told me",
        "what": {ALL: "anything about you", "name": "your name", "location": "where you live", "employer": "where you work",
                 "job": "what you do for a living", "age": "how old you are", "birthday": "when your birthday is",
                 "allergy": "whether you have any allergies", "pet": "about any pets of yours", "family": "about your family",
                 "likes": "what you like", "dislikes": "what you dislike", "hobby": "your hobbies", "plan": "your plans",
                 "other": "that about you", "detail": "about your {d}"},
    },
    "pt": {
        "name": "o teu nome é {v}", "location": "vives em {v}", "age": "tens {v} anos", "job": "trabalhas como {v}",
        "employer": "trabalhas na {v}", "likes": "gostas de {v}", "dislikes": "não gostas de {v}", "hobby": "gostas de {v}",
        "allergy": "és alérgico a {v}", "birthday": "o teu aniversário é {v}", "plan": "planeias: {v}",
        "pet_named": "tens um {kind} chamado {name}", "family_named": "o teu/a tua {kind} chama-se {name}",
        "have": "tens {v}", "other": "disseste-me: {v}",
        "all": "Isto é o que sei sobre ti:", "unknown": "Ainda não sei {what} — ainda não me disseste.",
        "today": "disseste-me hoje", "yesterday": "disseste-me ontem", "on": "disseste-me a {day}", "just": "acabaste de me dizer",
        "what": {ALL: "nada sobre ti", "name": "o teu nome", "location": "onde vives", "job": "em que trabalhas", "pet": "sobre os teus animais",
                 "detail": "sobre o teu {d}"},
    },
    "es": {
        "name": "te llamas {v}", "location": "vives en {v}", "age": "tienes {v} años", "job": "trabajas como {v}",
        "employer": "trabajas en {v}", "likes": "te gusta {v}", "dislikes": "no te gusta {v}", "hobby": "te gusta {v}",
        "allergy": "eres alérgico a {v}", "birthday": "tu cumpleaños es {v}", "plan": "planeas: {v}",
        "pet_named": "tienes un {kind} que se llama {name}", "family_named": "tu {kind} se llama {name}",
        "have": "tienes {v}", "other": "me dijiste: {v}",
        "all": "Esto es lo que sé de ti:", "unknown": "Todavía no sé {what}: aún no me lo has dicho.",
        "today": "me lo dijiste hoy", "yesterday": "me lo dijiste ayer", "on": "me lo dijiste el {day}", "just": "me lo acabas de decir",
        "what": {ALL: "nada de ti", "name": "cómo te llamas", "location": "dónde vives", "job": "en qué trabajas", "pet": "de tus mascotas",
                 "detail": "de tu {d}"},
    },
    "fr": {
        "name": "tu t'appelles {v}", "location": "tu habites à {v}", "age": "tu as {v} ans", "job": "tu travailles comme {v}",
        "employer": "tu travailles chez {v}", "likes": "tu aimes {v}", "dislikes": "tu n'aimes pas {v}", "hobby": "tu aimes {v}",
        "allergy": "tu es allergique à {v}", "birthday": "ton anniversaire est le {v}", "plan": "tu prévois : {v}",
        "pet_named": "tu as un {kind} qui s'appelle {name}", "family_named": "ton/ta {kind} s'appelle {name}",
        "have": "tu as {v}", "other": "tu m'as dit : {v}",
        "all": "Voici ce que je sais de toi :", "unknown": "Je ne sais pas encore {what} : tu ne me l'as pas dit.",
        "today": "tu me l'as dit aujourd'hui", "yesterday": "tu me l'as dit hier", "on": "tu me l'as dit le {day}", "just": "tu viens de me le dire",
        "what": {ALL: "grand-chose de toi", "name": "comment tu t'appelles", "location": "où tu habites", "job": "ce que tu fais", "pet": "tes animaux",
                 "detail": "le nom de ton {d}"},
    },
    "de": {
        "name": "du heißt {v}", "location": "du wohnst in {v}", "age": "du bist {v}", "job": "du arbeitest als {v}",
        "employer": "du arbeitest bei {v}", "likes": "du magst {v}", "dislikes": "du magst {v} nicht", "hobby": "du magst {v}",
        "allergy": "du bist allergisch gegen {v}", "birthday": "dein Geburtstag ist am {v}", "plan": "du planst: {v}",
        "pet_named": "du hast einen {kind} namens {name}", "family_named": "dein(e) {kind} heißt {name}",
        "have": "du hast {v}", "other": "du hast mir gesagt: {v}",
        "all": "Das weiß ich über dich:", "unknown": "Ich weiß noch nicht {what} — du hast es mir noch nicht gesagt.",
        "today": "das hast du mir heute gesagt", "yesterday": "das hast du mir gestern gesagt", "on": "das hast du mir am {day} gesagt",
        "just": "das hast du mir gerade gesagt",
        "what": {ALL: "etwas über dich", "name": "wie du heißt", "location": "wo du wohnst", "job": "was du arbeitest", "pet": "von deinen Tieren",
                 "detail": "wie dein {d} heißt"},
    },
}


def told(when: float | None, lang: str = "en", now: float | None = None) -> str:
    """Provenance in words: "you just told me", "you told me today", "you told me on 3 May"."""
    p = _PHRASES.get(lang, _PHRASES["en"])
    if when is None:
        return str(p["just"])
    today = date.fromtimestamp(now if now is not None else time.time())
    day = date.fromtimestamp(when)
    if day == today:
        return str(p["today"])
    if (today - day).days == 1:
        return str(p["yesterday"])
    text = f"{day.day} {day.strftime('%B')}" + ("" if day.year == today.year else f" {day.year}")
    return str(p["on"]).format(day=text)


def phrase(f: Fact, lang: str = "en") -> str:
    """One fact as shoal says it back: "you live in York"."""
    p = _PHRASES.get(lang, _PHRASES["en"])
    v = f.value.strip()
    a = f.attribute
    if a in ("pet", "family"):
        parts = v.split()
        if len(parts) >= 2 and parts[-1][:1].isupper() and parts[0][:1].islower():
            return str(p[f"{a}_named"]).format(kind=" ".join(parts[:-1]), name=parts[-1])
        counted = re.match(r"(?:a|an|one|two|three|four|\d+)\b", v, re.I)
        plural = v.lower().endswith("s") and not v.lower().endswith("ss")
        article = "a " if lang == "en" and not counted and not plural else ""
        return str(p["have"]).format(v=article + v)
    if a == "age" and lang == "en" and not re.search(r"\b(?:years?|yo)\b", v, re.I):
        return f"you're {v} years old"
    if a == "job" and lang == "en":
        article = "" if re.match(r"(?:a|an|the)\s", v, re.I) or v.lower() in ("retired", "unemployed", "self-employed") else (
            "an " if v[:1].lower() in "aeiou" else "a "
        )
        if v.lower() in ("retired", "unemployed", "self-employed"):
            return f"you're {v}"
        return str(p["job"]).format(a=article, v=v)
    template = str(p.get(a, p["other"]))
    return template.format(v=v, a="")


def answer(question: Question, facts: Iterable[Fact]) -> str:
    """The reply to ``question`` from ``facts``: each fact with when it was said, or an honest "don't know"."""
    lang = question.lang if question.lang in _PHRASES else "en"
    p = _PHRASES[lang]
    found = _dedup([f for f in facts if _matches(question, f)])
    if not found:
        what_table: dict[str, str] = p["what"]  # type: ignore[assignment]
        if question.detail and question.attribute in ("pet", "family") and question.detail not in ("pet", "pets"):
            what = what_table.get("detail", "about your {d}").format(d=question.detail)
        else:
            what = what_table.get(question.attribute) or _PHRASES["en"]["what"].get(question.attribute, "that")  # type: ignore[union-attr]
        return str(p["unknown"]).format(what=what)
    # provenance is when it was said; the words themselves are in the memory's card (a clause such as
    # "I moved to York from Leeds" would bring back the very value that is no longer true)
    if question.attribute == ALL:
        # grouped by when it was said: "You told me today:" once, not after every line
        groups: dict[str, list[str]] = {}
        for f in found:
            groups.setdefault(told(f.when, lang), []).append(f"• {phrase(f, lang)}")
        parts = [f"{_capital(when)}:\n" + "\n".join(lines) for when, lines in groups.items()]
        return f"{p['all']}\n" + "\n".join(parts)
    if len(found) == 1:
        f = found[0]
        return f"{_capital(phrase(f, lang))} — {told(f.when, lang)}."
    listed = "; ".join(f"{phrase(f, lang)} ({told(f.when, lang)})" for f in found)
    return f"{_capital(listed)}."


def _dedup(facts: Sequence[Fact]) -> list[Fact]:
    seen: set[tuple[str, str]] = set()
    out = []
    for f in facts:
        key = (f.attribute, f.value.lower())
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]
