"""Facts about the user, extracted from what they say and grounded in it — precise first.

Two extractors, rules first and the model second (DESIGN.md §5):

* ``rule_facts`` — patterns for what people most often say about
  themselves ("my name is ...", "I moved from Leeds to York", "I'm allergic
  to ...", "my kids are Mia, Leo and Zoe", "I don't drink coffee, only
  tea"); precise and free;
* model candidates — the bot's model, forced by a JSON schema, few-shot.

Only *statements* give facts: a message is cut into sentences, and
questions, requests and hypotheticals ("can you find me a recipe with
spiders?", "if I were a pilot…") give none. A model candidate must also
name the speaker as the subject of its clause ("my sister lives in Paris"
is not where *they* live). Every candidate passes ``ground``: its value's
words must occur in the message, and the stored text is the clause that
holds it — so a memory never says anything the user did not.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from shoal.memory.store import STOPWORDS, keywords

ATTRIBUTES = (
    "name",
    "location",
    "age",
    "job",
    "employer",
    "likes",
    "dislikes",
    "hobby",
    "family",
    "pet",
    "plan",
    "allergy",
    "birthday",
    "other",
)


@dataclass(frozen=True, slots=True)
class Candidate:
    attribute: str
    value: str
    method: str


@dataclass(frozen=True, slots=True)
class Fact:
    attribute: str
    value: str
    #: the clause of the message that states the fact, verbatim
    text: str
    method: str


# -------------------------------------------------------------------- sentences
#: the speaker talks about themselves ("I ...", "my ...")
PERSONAL = re.compile(r"\b(?:i|i'm|im|i am|my|me|mine|i've|i'd|i'll|myself)\b", re.I)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+|(?<=[.!?])(?=[A-Z])")
_QUESTION_START = re.compile(
    r"^\s*(?:so|and|but|ok|okay|hey|hi|hmm|well|also|btw|oh)?[,\s]*"
    r"(?:who|what|what's|whats|when|where|where's|why|how|which|whose|whom|can|could|would|will|should|shall|"
    r"do|does|did|is|are|am|was|were|have|has|had|may|might|any idea|any chance|wanna|want to|mind)\b",
    re.I,
)
_REQUEST_START = re.compile(
    r"^\s*(?:so|and|ok|okay|hey|hi|also|now|then|pls|plz)?[,\s]*"
    r"(?:please\b|pls\b|plz\b|tell me|give me|show me|help me|find me|find|get me|send me|remind me|let me know|"
    r"let's|lets|let us|explain|describe|write|make|recommend|suggest|list|search|translate|summari[sz]e|book|"
    r"play|name|pick|choose|check|look up|calculate|draft|plan (?:a|my|me|an)|give|tell|show)\b(?!')",
    re.I,
)
_HYPOTHETICAL = re.compile(
    r"\b(?:if i (?:were|was|had|could|lived|worked)|i wish i|imagine (?:i|if)|suppose i|pretend i|what if i|"
    r"if only i|i (?:might|may|could) (?:be|move|live|get)|maybe i(?:'ll| will| should)|i would love to|i'd love to|"
    r"i was thinking (?:of|about)|thinking about (?:moving|getting)|i'm thinking (?:of|about)|"
    r"(?:not sure|unsure|undecided|can't decide|cannot decide|don't know|do not know|wondering) (?:if|whether)|"
    r"(?:might|may|could) (?:want to|end up|have to))\b",
    re.I,
)


def is_personal(text: str) -> bool:
    """Whether the message says something about its speaker."""
    return bool(PERSONAL.search(text))


#: someone else's words in quotes (an apostrophe between letters, as in "I'm", is not a quote mark)
_QUOTED = re.compile(
    r"(?:^|(?<=\s))(?:'(?:[^']|(?<=\w)'(?=\w)){3,}'|\"[^\"]{3,}\"|“[^”]{3,}”|‘(?:[^’]|(?<=\w)’(?=\w)){3,}’)(?=\W|$)"
)
_DASH = re.compile(r"\s+[-–—]\s+")
_VERBISH = re.compile(
    r"\b(?:am|is|are|was|were|be|been|have|has|had|do|does|did|live|lives|work|works|love|like|hate|got|get|go|moved|"
    r"turn|turned|keep|call|called|named|own|play|run|use|eat|drink|allergic|here|\w+ing|\w+ed)\b|'m\b|'s\b|'ve\b|'re\b",
    re.I,
)


def sentences(message: str) -> list[str]:
    """The message cut into sentences. Quotes of someone else's words are left out; a statement
    with a question tacked on ("I'm moving to Porto, any tips?") is cut before the question."""
    message = _QUOTED.sub(" ", message)
    out = []
    for p in (p.strip() for p in _SENTENCE_END.split(message)):
        if not p or not re.search(r"\w", p):
            continue
        pieces = _DASH.split(p)
        for i, piece in enumerate(pieces):
            # a dash starts a new sentence only where a question or a new clause follows it
            if i and (pieces[i].rstrip().endswith("?") or re.match(r"^(?:i|i'm|im|my|we)\b", piece, re.I)):
                out.append(piece)
            elif out and i:
                out[-1] = f"{out[-1]} - {piece}"
            else:
                out.append(piece)
    final = []
    for p in out:
        head, sep, tail = p.partition(", ")
        if sep and p.endswith("?") and not _QUESTION_START.match(head) and not _REQUEST_START.match(head):
            final += [head, tail]
        else:
            final.append(p)
    # a fragment with no verb before a question is part of the question ("my kids' names - have you got them?")
    return [
        f for i, f in enumerate(final)
        if _VERBISH.search(f) or i + 1 == len(final) or not final[i + 1].rstrip().endswith("?")
    ]


def sentence_kind(sentence: str) -> str:
    """"question", "request", "hypothetical" or "statement"."""
    s = sentence.strip()
    if s.endswith("?") or _QUESTION_START.match(s) and not re.match(r"^\s*(?:i|my|i'm|im)\b", s, re.I):
        return "question"
    if _REQUEST_START.match(s):
        return "request"
    if _HYPOTHETICAL.search(s):
        return "hypothetical"
    return "statement"


def statements(message: str) -> list[str]:
    """The sentences of a message that state something (questions, requests, hypotheticals left out)."""
    return [s for s in sentences(message) if sentence_kind(s) == "statement"]


# -------------------------------------------------------------------- rules
from shoal.memory.rules import ANIMAL as _ANIMAL  # noqa: E402
from shoal.memory.rules import RELATION as _RELATION  # noqa: E402
from shoal.memory.rules import FJOBS as _FJOBS  # noqa: E402
from shoal.memory.rules import JOBS as _JOBS  # noqa: E402
from shoal.memory.rules import RULES as _RULES  # noqa: E402

#: kinds stated as lists ("allergic to peanuts and shellfish"): every item is a fact
_LISTED = frozenset({"allergy", "likes", "dislikes", "pet"})
_LIST_MORE = re.compile(
    r"^\s*(?:,\s*|\s+(?:and|&)\s+|,\s*and\s+)([\w'\-]+(?: [\w'\-]+){0,2}?)"
    r"(?=\s*(?:[.,!?;]|\b(?:and|but|so|because|which|as|though|too|since)\b|$))",
    re.I,
)
#: a list goes on with things, not with a new clause ("…sesame and it's in everything")
_NOT_ITEMS = frozenset(
    "i my i'm im we it it's its they he she you only just but except not so give get carry is are was were have has "
    "can can't do don't which that this there then also always never really "
    # the same little words in Portuguese, Spanish, French and German ("allergisch gegen Nüsse, das nervt")
    "das dies es er sie ce ça c'est cela isso isto eso esto ele ela il elle que qui und e y et mais aber pero mas".split()
)


def _more_of_a_list(rest: str) -> list[str]:
    """The further items of a list that a rule's match ended before ("…peanuts| and shellfish")."""
    out = []
    while (m := _LIST_MORE.match(rest)) and len(out) < 4:
        item = m.group(1).strip()
        first = item.lower().split()[0] if item else ""
        if first in _NOT_ITEMS:
            break
        out.append(item)
        rest = rest[m.end():]
    return out


_NOT_NAMES = frozenset(
    "a an the so not just really very here there fine good ok okay sure sorry happy sad tired back home going "
    "trying looking from in at on glad afraid new bored hungry sick done ready busy excited scared sleepy "
    "thrilled lost confused curious stuck late early free single married retired alone still also only".split()
)
_NOT_THINGS = frozenset("it that this them you him her those these there so much to a lot".split())


_KIDS_WORDS = r"(?:\w+\s+)?(?:kids|children|sons|daughters|boys|girls|lads|twins|grandkids|grandchildren)"
_KID_LABEL = {"son": "son", "boy": "son", "lad": "son", "daughter": "daughter", "daugter": "daughter", "girl": "daughter"}
_NAMED_LATER = re.compile(r"\b(?:(?:she|he|it|they)(?:'s| is| are|'re)\s+(?:called|named)|(?:her|his|its|their) name(?:'s| is))\s+([A-Z]\w+)")
#: said with a roll of the eyes: "oh great, I just LOVE Mondays", "oh yeah I just LOVE being stuck on the M25"
_SARCASM = re.compile(r"\b(?:LOVE|LOVES|LIKE|ADORE|ENJOY)\b|^\s*(?i:oh (?:great|yeah|sure|joy|wonderful|fantastic|brilliant)|yeah right|just what i needed)\b")


def _singular(animal: str) -> str:
    """"cats" → "cat", "chats" → "chat", "Katzen" → "Katze": what one of them is (the word stays the person's)."""
    low = animal.lower()
    for plural, cut, add in (("ies", 3, "y"), ("ches", 2, ""), ("shes", 2, ""), ("xes", 2, ""), ("sses", 2, ""),
                             ("aux", 3, "al"), ("ães", 3, "ão"), ("zen", 1, ""), ("hunde", 1, "")):
        if low.endswith(plural):
            return animal[: len(animal) - cut] + add
    if low.endswith("s") and not low.endswith("ss") and len(low) > 3:
        return animal[:-1]
    return animal


def rule_facts(message: str) -> list[Candidate]:
    """Rule candidates from the message's statements (questions and requests give none)."""
    out: list[Candidate] = []
    for sentence in statements(message):
        found: list[Candidate] = []
        sarcastic = bool(_SARCASM.search(sentence))
        for attribute, pattern in _RULES:
            for m in pattern.finditer(sentence):
                groups = [g for g in m.groups() if g]
                if not groups:
                    continue
                if attribute == "children":
                    word = re.search(r"\b(sons?|boys?|lads?|daughters?|daug?h?ters?|girls?)\b", m.group(0), re.I)
                    label = _KID_LABEL.get(word.group(1).lower().rstrip("s").replace("h", "") if word else "", "child")
                    label = _KID_LABEL.get(word.group(1).lower().rstrip("s"), label) if word else label
                    for name in re.split(r"\s*,\s*|\s+(?:and|&)\s+", groups[-1]):
                        name = re.sub(r"^(?:little|baby|wee|young|big|and)\s+", "", name.strip(), flags=re.I)
                        if name and name.lower() not in _NOT_NAMES:
                            found.append(Candidate("family", f"{label} {name}", "rule"))
                    continue
                if attribute == "pets":
                    # "two cats, Salt and Pepper", "deux chats, Moka et Praline": one fact per animal
                    kind = _singular(groups[0].strip())
                    for name in re.split(r"\s*,\s*|\s+(?:and|&|e|y|et|und)\s+", groups[-1]):
                        name = re.sub(r"^(?:little|baby|wee|young|big|and)\s+", "", name.strip(), flags=re.I)
                        if name and name.lower() not in _NOT_NAMES:
                            found.append(Candidate("pet", f"{kind} {name}", "rule"))
                    continue
                if attribute in ("pet", "family"):
                    value = " ".join(g.strip() for g in groups).strip(" '-")
                else:
                    value = groups[-1].strip(" '-")
                value = value.rstrip(".,!?;:").strip()
                extras = _more_of_a_list(sentence[m.end():]) if attribute in _LISTED else []
                if attribute == "pet":
                    extras = [e for e in extras if _ANIMAL_WORD.search(e)]
                if value.lower().startswith("both "):
                    value = value[5:]
                if attribute == "name" and value.split()[0].lower() in _NOT_NAMES:
                    continue
                if attribute in ("likes", "dislikes", "hobby", "allergy", "plan") and value.lower() in _NOT_THINGS:
                    continue
                if attribute in ("likes", "hobby") and sarcastic:
                    continue
                found.append(Candidate(attribute, value, "rule"))
                found += [Candidate(attribute, extra, "rule") for extra in extras]
        # "got a new puppy last week!! she's called Luna": the name comes a clause later
        named = _NAMED_LATER.search(message)
        if named:
            found = [
                Candidate("pet", f"{c.value} {named.group(1)}", "rule") if c.attribute == "pet" and not re.search(r"[A-Z]", c.value) else c
                for c in found
            ]
        # "two cats, Salt and Pepper": the named cats say more than "cats"
        named_kinds = {c.value.rsplit(" ", 1)[0].lower() for c in found if c.attribute == "pet" and re.search(r" [A-ZÀ-Þ]\w*$", c.value)}
        found = [
            c for c in found
            if not (c.attribute == "pet" and not re.search(r"[A-ZÀ-Þ]", c.value) and _singular(c.value.split()[-1]).lower() in named_kinds)
        ]
        # "my kids are Mia and Leo": the names say more than "kids"
        if any(c.attribute == "family" and re.match(r"(?:child|son|daughter|grandchild) ", c.value) for c in found):
            found = [c for c in found if not (c.attribute == "family" and re.fullmatch(_KIDS_WORDS, c.value, re.I))]
        out += found
    return out


# -------------------------------------------------------------------- model
FACT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "maxItems": 4,
            "items": {
                "type": "object",
                "properties": {
                    "attribute": {"type": "string", "enum": list(ATTRIBUTES)},
                    "value": {"type": "string", "maxLength": 48},
                },
                "required": ["attribute", "value"],
            },
        }
    },
    "required": ["facts"],
}

FEW_SHOT: list[tuple[str, str]] = [
    (
        "I'm Sarah, I work as a nurse in Bristol.",
        '{"facts": [{"attribute": "name", "value": "Sarah"}, {"attribute": "job", "value": "nurse"},'
        ' {"attribute": "location", "value": "Bristol"}]}',
    ),
    ("What's the weather like today?", '{"facts": []}'),
    (
        "I love hiking with my dog Rex.",
        '{"facts": [{"attribute": "likes", "value": "hiking"}, {"attribute": "pet", "value": "dog Rex"}]}',
    ),
    ("My brother lives in Rome.", '{"facts": [{"attribute": "family", "value": "brother"}]}'),
]


def extraction_messages(instruction: str, message: str) -> list[tuple[str, str]]:
    """(role, content) pairs for the extraction prompt."""
    system = (
        (instruction + " " if instruction else "")
        + "List facts the user states about themselves as JSON. Use only words from the message. "
        + "Facts about other people are not the user's. If there are none, return an empty list."
    )
    msgs = [("system", system)]
    for example, answer in FEW_SHOT:
        msgs.append(("user", f"Message: {example}"))
        msgs.append(("assistant", answer))
    msgs.append(("user", f"Message: {message}"))
    return msgs


def parse_model_output(text: str) -> list[Candidate]:
    """Candidates from the model's JSON; raises ValueError when it is not valid."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("facts"), list):
        raise ValueError("expected an object with a 'facts' list")
    out = []
    for item in data["facts"]:
        if not isinstance(item, dict):
            raise ValueError("a fact is not an object")
        attribute, value = item.get("attribute"), item.get("value")
        if attribute not in ATTRIBUTES or not isinstance(value, str):
            raise ValueError(f"invalid fact {item!r}")
        out.append(Candidate(attribute, value.strip(), "model"))
    return out


# -------------------------------------------------------------------- grounding
_CLAUSE_SPLIT = re.compile(
    r"(?<=[.!?;\n])\s+|,\s+(?=and\b|but\b|i\b|i'm\b|im\b|my\b|so\b|though\b)|\s+(?=(?:and|but|so) (?:i|my|i'm|im)\b)|\s+[-–—]\s+",
    re.I,
)


def _stem(w: str) -> str:
    """A crude stem: enough to match hike/hiking/hikes, city/cities, wife/wife's."""
    w = w.removesuffix("'s").removesuffix("’s")
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    for suf in ("ing", "es", "ed", "s", "e"):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            return w[: -len(suf)]
    return w


def _stems(text: str) -> set[str]:
    return {_stem(w) for w in keywords(text)}


def clauses(message: str) -> list[str]:
    parts = [p.strip(" ,") for p in _CLAUSE_SPLIT.split(message)]
    parts = [re.sub(r"^(?:and|but|so)\s+", "", p, flags=re.I) for p in parts if p and p.strip(" ,")]
    return [p for p in parts if p]


#: the clause's subject is someone else ("my sister lives in Paris", "he works as a nurse")
_THIRD_PARTY = re.compile(
    r"^\s*(?:(?:my|our|his|her|their)\s+(?:[a-z]+\s+){0,2}?" + _RELATION + r"s?|(?:my|our)\s+(?:friend|boss|neighbou?r|colleague|mate|flatmate|roommate)s?|he|she|they|it)\b"
    r"(?!\s+(?:and i|& i))",
    re.I,
)
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|im|i've|i'd|i'll|my|me|mine|myself)\b", re.I)


_RELATION_WORD = re.compile(r"\b(?:" + _RELATION + r"|child|children|kids?|sons?|daughters?|siblings?|parents?|family)\b", re.I)
_ANIMAL_WORD = re.compile(r"\b(?:" + _ANIMAL + r"|pets?)\b", re.I)


#: someone else the clause is about, with a word or two between ("my best friend is allergic to nuts",
#: "a mate of mine is ...", "my neighbour's dog"): what the model reads as the speaker's fact is theirs
_SOMEONE_ELSE = re.compile(
    r"^\s*(?:(?:my|our)\s+(?:[a-z]+\s+){0,2}?(?:friend|boss|neighbou?r|colleague|mate|flatmate|roommate|partner's|"
    + _RELATION + r"'s)s?(?:'s)?|an?\s+(?:[a-z]+\s+)?(?:friend|mate|colleague|neighbou?r)\s+of\s+(?:mine|ours))\b"
    r"(?!\s+(?:and i|& i))",
    re.I,
)


def _about_the_speaker(attribute: str, clause: str, value: str = "") -> bool:
    """Whether ``clause`` states something about the speaker (what the model's candidates must do).

    A family or pet fact must say which relation or animal it is ("sister Anna", "cat Tom"): a bare
    name ("Bob") is not one, and a friend's or a neighbour's is not the speaker's."""
    if not _FIRST_PERSON.search(clause):
        return False
    if attribute != "family" and _SOMEONE_ELSE.match(clause):
        return False
    if attribute == "family":
        return bool(_RELATION_WORD.search(value))
    if attribute == "pet":
        return bool(_ANIMAL_WORD.search(value))
    return not _THIRD_PARTY.match(clause)


def ground(candidate: Candidate, message: str) -> Fact | str:
    """A grounded ``Fact``, or the reason the candidate is rejected."""
    value = " ".join(candidate.value.split())
    if not value:
        return "empty value"
    value_words = keywords(value)
    if not value_words:
        if value.lower() in STOPWORDS or not re.search(r"\w", value):
            return f"value {value!r} has no content words"
        value_words = {value.lower()}
    msg_stems = _stems(message)
    if not keywords(value) and re.search(rf"(?<!\w){re.escape(value.lower())}(?!\w)", message.lower()):
        msg_stems = msg_stems | value_words  # "B&B", "DJ": no content word, but there as written
    # "child Mia": the label says what Mia is (from "my kids are ..."); the name is what must be said
    missing = [w for w in value_words - _LABELS if _stem(w) not in msg_stems]
    if missing:
        return f"words not in the message: {', '.join(sorted(missing))}"
    if candidate.attribute == "name" and value.lower() in ("user", "assistant", "me", "i"):
        return "not a name"
    negative = bool(_NEGATIVE.search(message))
    if candidate.attribute == "dislikes" and not negative:
        return "a dislike needs a negative word (hate, don't like, ...) in the message"
    if candidate.attribute in ("likes", "hobby") and negative:
        clause = _clause_with(value_words, message) or ""
        if _NEGATIVE.search(_before(value_words, clause)):
            return "the message says the opposite of a like"
    best = None
    for clause in clauses(message):
        if all(_stem(w) in _stems(clause) for w in value_words - _LABELS):
            if best is None or len(clause) < len(best):
                best = clause
    return Fact(candidate.attribute, value, best or message.strip(), candidate.method)


_NEGATIVE = re.compile(
    r"\b(?:hate|hates|dislike|dislikes|detest|loathe|can't stand|cannot stand|can't bear|don't|do not|doesn't|not|never|"
    r"no longer|awful|allergic|\w+n't|nothing for me|not for me|not my thing)\b",
    re.I,
)


#: words a rule adds to name the kind of a value (not copied from the message)
_LABELS = frozenset({"child", "son", "daughter", "grandchild"})


def _clause_with(words: set[str], message: str) -> str | None:
    for clause in clauses(message):
        if all(_stem(w) in _stems(clause) for w in words):
            return clause
    return None


def _before(words: set[str], clause: str) -> str:
    """The part of ``clause`` a negation before ``words`` would apply in: back to the last
    "only", "but", "instead", "except" or comma ("I don't drink coffee, only tea": tea is liked)."""
    low = clause.lower()
    cut = min((low.find(w) for w in words if low.find(w) >= 0), default=len(low))
    before = clause[:cut]
    parts = re.split(r",|\b(?:only|just|but|instead|except|rather)\b", before, flags=re.I)
    return parts[-1]


def _within(value: str, other: str) -> bool:
    """Every word of ``value`` is a word of ``other`` ("sister" within "sister Anna"; "Seun" not within "Oluwaseun")."""
    return set(value.lower().split()) <= set(other.lower().split())


# -------------------------------------------------------------------- what a model candidate must look like
_JOB_WORDS = frozenset(w.lower() for w in _JOBS + _FJOBS)
_JOB_SHAPE = re.compile(r"(?:er|or|ist|ian|ant|ent|ive|eur|euse|ero|era|ora|iste|ing)s?$", re.I)
_LIKE_WORDS = re.compile(
    r"\b(?:like|likes|love|loves|loving|enjoy|enjoys|adore|prefer|fan|into|favou?rite|obsessed|passion\w*|hooked|"
    r"addicted|keen|mad about|crazy about|gusta|encanta|adoro|gosto|aime|adore|mag|liebe)\b",
    re.I,
)
_HOBBY_WORDS = re.compile(r"\b(?:hobby|hobbies|free time|spare time|weekends?|for fun|play|plays|playing|practi[cs]e|collect|go|do)\b|\w+ing\b", re.I)
_PLAN_WORDS = re.compile(
    r"\b(?:plan|plans|planning|going to|gonna|about to|will|'ll|intend|hope to|hoping to|want to|next|soon|tomorrow|"
    r"booked|heading|moving|getting)\b",
    re.I,
)
_DATE_WORDS = re.compile(r"\d|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b|christmas|new year", re.I)
_AGE_VALUE = re.compile(r"^(?:\d{1,3}|[a-z]+ty(?:[\s-][a-z]+)?|[a-z]+teen)(?:\s+(?:years?(?:\s+old)?|yo))?$", re.I)


_FAMILY_VALUE = re.compile(
    r"^(?:(?:my|our|a|an|one|two|three|four|\d)\s+)?(?:(?:little|big|older|younger|baby|twin|step|half|ex|late)[\s\-])?"
    + _RELATION + r"s?(?:\s+[A-Z][\w'\-]*)*$",
    re.I,
)


#: a place said as somewhere they go, not where they live ("off to Vietnam", "hiking in the Peak District")
_AWAY = re.compile(
    r"\b(?:off to|going to|heading(?: off)? to|flying to|fly to|trip|travel\w*|visit\w*|holiday\w*|vacation\w*|"
    r"flights?|booked|hik\w*|walk\w*|climb\w*|camp\w*|weekend|somewhere|day out|tour\w*)\b",
    re.I,
)
#: an employer is said with work ("I work for ...", "a nurse at ...", "joined Monzo")
_WORK_WORDS = re.compile(
    r"\b(?:work\w*|job|employ\w*|compan\w*|firm|join\w*|hired|intern\w*|staff|contract\w*|career|"
    r"boss|office|shift\w*|at|for|with)\b",
    re.I,
)


def plausible(attribute: str, value: str, clause: str) -> str | None:
    """Why a *model* candidate cannot be what it says it is, or None.

    The 135M model under a JSON schema names kinds loosely ("likes: spider" from a question about spiders,
    "job: tired", "location: work"); rules are written for their kinds, the model's output is checked against
    the shape of each kind: a name or a place is capitalised, a job is a job word, a like is said with a
    liking word, an age is a number, a date has a day or a month.
    """
    v = value.strip()
    words = v.split()
    if v.lower().rstrip("s") in (attribute, "allergic", "pet", "hobby", "plan", "family"):
        return "the value is only the kind of fact"
    if attribute == "name":
        if not (1 <= len(words) <= 2 and all(w[:1].isupper() for w in words)):
            return "a name is one or two capitalised words"
    elif attribute == "location":
        if not v[:1].isupper() or len(words) > 4:
            return "a place is capitalised"
        if _AWAY.search(_before(keywords(v), clause) or ""):
            return "a place they go to, not where they live"
    elif attribute == "job":
        if len(words) > 4 or not any(w.lower().strip(".,") in _JOB_WORDS or _JOB_SHAPE.search(w) for w in words):
            return "not a job word"
    elif attribute == "employer":
        if not v[:1].isupper() and not v.lower().startswith("the "):
            return "an employer is a capitalised name"
        if not _WORK_WORDS.search(clause):
            return "not said as where they work"
    elif attribute == "age":
        if not _AGE_VALUE.match(v) or (v.isdigit() and not 1 <= int(v) <= 120):
            return "an age is a number"
        if not re.search(r"\b(?:i'm|i am|im|aged?|years?|yo|yrs|turned)\b|^\W*" + re.escape(v), clause, re.I):
            return "not said as their age (\"I turn 30 on ...\" is a birthday)"
    elif attribute == "birthday":
        if not _DATE_WORDS.search(v) or not re.search(r"birthday|\bb-?day|\bborn\b|\bturn(?:s|ing)? \d", clause, re.I):
            return "a birthday is a day or a month said as one"
    elif attribute == "likes":
        if not _LIKE_WORDS.search(clause) or len(words) > 5:
            return "no liking word in its clause"
        if _SARCASM.search(clause):
            return "said with a roll of the eyes"
    elif attribute == "dislikes":
        if not _NEGATIVE.search(clause) or len(words) > 5:
            return "no disliking word in its clause"
    elif attribute == "family":
        if not _FAMILY_VALUE.match(v):
            return "a family fact is a relation and maybe a name"
        relation = re.search(_RELATION, v, re.I)
        if relation and not re.search(
            r"\b(?:my|our|i have an?|i've got an?|we have an?)\s+(?:[a-z]+[\s\-]){0,2}?" + re.escape(relation.group(0).lower()), clause.lower()
        ):
            return "not said as their relative (\"my ...\")"
    elif attribute == "hobby":
        if not _HOBBY_WORDS.search(clause) or len(words) > 4:
            return "not said as a pastime"
    elif attribute == "allergy":
        if not re.search(r"allerg|al[eé]rgi|intoleran|can't (?:eat|have)|react", clause, re.I):
            return "an allergy is said as one"
    elif attribute == "plan":
        if not _PLAN_WORDS.search(clause):
            return "not said as a plan"
    elif attribute == "other":
        return "too vague to keep from the model alone"
    return None


def extract(message: str, model_candidates: list[Candidate] | None = None) -> tuple[list[Fact], list[tuple[Candidate, str]]]:
    """Ground rule and model candidates; returns (facts, rejected-with-reason).

    Rule facts win over model facts for the same single-valued attribute;
    model candidates must come from a statement whose subject is the
    speaker; duplicates go.
    """
    facts: list[Fact] = []
    rejected: list[tuple[Candidate, str]] = []
    seen: set[tuple[str, str]] = set()
    rule_attrs: set[str] = set()
    said = statements(message)
    stated = " ".join(said)
    for cand in rule_facts(message) + list(model_candidates or []):
        if cand.method == "model":
            if cand.attribute in rule_attrs and cand.attribute in ("name", "location", "age", "job", "employer", "birthday"):
                continue
            if not said:
                rejected.append((cand, "the message states nothing (a question or a request)"))
                continue
            result = ground(cand, stated)
            if not isinstance(result, str) and not _about_the_speaker(cand.attribute, result.text, result.value):
                result = "its clause is not about the user"
            if not isinstance(result, str):
                result = plausible(result.attribute, result.value, result.text) or result
        else:
            result = ground(cand, stated or message)
            if not isinstance(result, str) and result.attribute != "family" and _THIRD_PARTY.match(result.text):
                result = "its clause is about someone else"
        if isinstance(result, str):
            rejected.append((cand, result))
            continue
        key = (result.attribute, result.value.lower())
        if key in seen or any(f.attribute == result.attribute and _within(result.value, f.value) for f in facts):
            continue
        if cand.method == "model" and (why := _contradicts_rules(result, facts)):
            rejected.append((cand, why))
            continue
        seen.add(key)
        if cand.method == "rule":
            rule_attrs.add(cand.attribute)
        facts.append(result)
    return facts, rejected


def _contradicts_rules(fact: Fact, facts: list[Fact]) -> str | None:
    """Why a model fact repeats, in the wrong kind, what a rule already found (None: it does not)."""
    named = {w for f in facts if f.attribute in ("pet", "family") for w in f.value.split() if w[:1].isupper()}
    if fact.attribute == "name" and set(fact.value.split()) & named:
        return "that name belongs to a pet or a relative"
    if fact.attribute == "family" and not re.search(r"[A-Z]", fact.value):
        kinds = {f.value.split()[0].lower() for f in facts if f.attribute == "family"}
        if kinds & {"child", "son", "daughter"} and re.fullmatch(_KIDS_WORDS + "|child|son|daughter", fact.value, re.I):
            return "the rules already named them"
        if any(_stem(fact.value.lower()) in {_stem(k) for k in kinds} for _ in (0,)):
            return "the rules already have that relation"
    return None
