"""How complex is a user turn? A cheap, deterministic guess for the local-first router.

``assess(text, previous)`` scores a turn from what it says, not from a model:
its length, how many questions or parts it holds, cues of code, maths,
reasoning, planning or writing at length, explicit asks for detail, and the
turn before it (a bare "why?" after a hard question is hard too). Small
talk, thanks and statements about oneself pull the score down. A turn whose
score reaches the threshold is *complex* and goes to the bigger model.

Every point of the score comes with a reason ("asks for code", "3
questions"), which the headspace shows. Measured on a hand-labelled set in
``bench/router.py``; a decision costs tens of microseconds (no model call).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: score at or above which a turn counts as complex (``[routing.local_first] threshold``)
THRESHOLD = 2.0

_W = r"(?<![\w-])"  # a word starts here (hyphenated words are one word)


def _words(*alternatives: str) -> re.Pattern[str]:
    return re.compile(_W + r"(?:" + "|".join(alternatives) + r")(?![\w-])", re.I)


#: (pattern, weight, reason): each counts once however often it matches
_CUES: list[tuple[re.Pattern[str], float, str]] = [
    (
        _words(
            r"code", r"coding", r"program(?:me)?s?", r"function", r"functions", r"method", r"class(?:es)?",
            r"python", r"javascript", r"typescript", r"java", r"rust", r"golang", r"c\+\+", r"bash", r"shell script",
            r"sql", r"regex(?:es)?", r"regular expression", r"api", r"endpoint", r"json", r"yaml", r"dockerfile",
            r"bug", r"debug(?:ging)?", r"stack ?trace", r"traceback", r"exception", r"compiler?", r"compil(?:e|es|ing)",
            r"refactor(?:ing)?", r"algorithm", r"big-?o", r"recursion", r"recursive", r"git", r"unit tests?",
            r"segfault", r"null pointer", r"script", r"query", r"database", r"schema", r"html", r"css", r"react",
            r"component", r"framework", r"library", r"npm", r"pip", r"docker", r"kubernetes", r"nginx", r"linux",
            r"server", r"deploy(?:ment)?", r"ssh", r"git push", r"time complexity", r"complexity", r"quicksort",
            r"sorting", r"data structure", r"hash ?map", r"compiler",
        ),
        2.0,
        "about code",
    ),
    (re.compile(r"```|`[^`\n]+`|\b[a-z]{2,}[A-Z]\w*|\b\w+\([^()\n]*\)|\b(?:def|fn|func|import|return|SELECT|FROM)\b\s+\w|[{};]\s*$|=>|!=|==", re.M), 2.0, "contains code"),
    (
        re.compile(
            r"\d\s*[-+*/×÷^%]\s*\d|\d+\s*(?:percent|%)|" + _W + r"(?:solve|equations?|integral|integrate|derivative|"
            r"differentiate|probability|probabilities|expected value|prove|proof|theorem|matrix|matrices|eigen\w*|"
            r"calculate|compute|how many \w+ (?:are there|would|will|do|does)|average of|square root|factori[sz]e|"
            r"compound interest|statistic(?:s|al)|variance|standard deviation|logarithm)(?![\w-])",
            re.I,
        ),
        2.0,
        "maths",
    ),
    (
        _words(
            r"explain", r"explanation", r"compare", r"comparison", r"differences? between", r"pros and cons",
            r"trade-?offs?", r"analy[sz]e", r"analysis", r"evaluate", r"implications?", r"what would happen",
            r"what if", r"argue", r"arguments?", r"for and against", r"critique", r"justify", r"consequences",
            r"underlying", r"mechanism", r"the best way to", r"where do you (?:land|stand)", r"in what way",
            r"how (?:does|do|did) (?:a |an |the )?[\w -]{2,40} work",
        ),
        2.0,
        "asks for reasoning",
    ),
    (
        re.compile(
            _W + r"(?:why|how (?!do you (?:say|spell|pronounce)|are you|is it going|'s it going)(?:does|do|did|would|could|can|is|are|should)|"
            r"should i|better (?:to|than|for)|versus|vs\.?|causes?|caused)(?![\w-])",
            re.I,
        ),
        1.0,
        "a why or how question",
    ),
    (
        _words(
            r"invest(?:ing|ment|ments)?", r"index funds?", r"loans?", r"mortgages?", r"refinanc\w*", r"pensions?",
            r"tax(?:es)?", r"interest rates?", r"stocks?", r"portfolio", r"savings", r"debt", r"insurance",
        ),
        1.0,
        "money decisions",
    ),
    (
        _words(
            r"plan", r"planning", r"schedule", r"itinerary", r"roadmap", r"strategy", r"strategi[sz]e",
            r"step[- ]by[- ]step", r"steps to", r"how (?:do|can|should) i (?:go about|get started|start|prepare|set up|build|migrate|learn)",
            r"organi[sz]e", r"budget", r"timeline", r"milestones?", r"checklist", r"workflow", r"curriculum",
            r"training programme", r"training program", r"meal plan", r"prioriti[sz]e",
        ),
        2.0,
        "planning",
    ),
    (
        _words(
            r"in detail", r"detailed", r"thorough(?:ly)?", r"comprehensive", r"elaborate", r"in depth", r"in-depth",
            r"walk me through", r"go through", r"break (?:it|this|that) down", r"essay", r"report", r"article",
            r"cover letter", r"proposal", r"summari[sz]e", r"outline", r"(?:at least|around|about) \d+ (?:words|paragraphs|points|items)",
            r"\d+ (?:paragraphs|bullet points|examples|ideas|ways|reasons|steps)", r"all the", r"everything about",
            r"write (?:me )?(?:a|an) (?:story|poem|speech|letter|email|blog post|review|script|song)",
            r"translate", r"rewrite", r"draft",
        ),
        2.0,
        "asks for length or detail",
    ),
]

#: the whole turn is small talk: a greeting, thanks, an acknowledgement, a goodbye
_SMALL_TALK = re.compile(
    r"^\s*(?:(?:hi|hello|hey|hiya|yo|howdy|good (?:morning|afternoon|evening|night)|thanks?(?: you)?(?: so much| a lot)?|"
    r"thx|ty|cheers|ok(?:ay)?|k|cool|nice|great|awesome|lol|haha|yes|yeah|yep|no|nope|sure|bye|goodbye|see you|"
    r"see ya|good ?night|got it|sounds good|perfect|wow|hmm+|oh|ah|right|alright|fine|how are you|how's it going|"
    r"what's up|sup|how are things|you too|same|me too|never mind|nevermind)[\s,.!?:;)(-]*)+"
    r"(?:\s*(?:shoal|there|buddy|friend|mate|pal|again|for (?:that|the help|your help)|today|doing))*[\s.!?]*$",
    re.I,
)
#: the person says something about themselves ("I'm Ana", "my cat is called Tom")
_ABOUT_ME = re.compile(r"^\s*(?:i am|i'm|im|my|i have|i've|i live|i work|i like|i love|i hate|i don't like|call me)\b", re.I)
#: a turn that leans on the one before ("why?", "go on", "and the second one?")
_FOLLOW_UP = re.compile(
    r"^\s*(?:why\??|how\??|and\b|but\b|so\b|then\b|what about\b|how about\b|go on|continue|keep going|more|tell me more|"
    r"expand|elaborate|can you (?:explain|expand|elaborate|go on|continue|give more)|what do you mean|"
    r"the (?:first|second|third|last|other) one|which one|ok(?:ay)?,? (?:and|but|so|now)|now\b|also\b)",
    re.I,
)
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+\S|(?<=\s)\d[.)]\s+[A-Za-z]", re.M)
#: clauses that open a question ("what licences do I need, how should I price ...")
_ASKS = re.compile(
    r"(?:^|[.?!,;:]\s*|\band\s+)(?:what|how|which|where|when|why|who|should|can|could|do|does|is|are)\b", re.I
)
_PARTS = re.compile(r"(?:;|\balso\b|\band then\b|\bafter that\b|\bfirst(?:ly)?\b.*\b(?:then|second(?:ly)?)\b)", re.I | re.S)
_WORD = re.compile(r"[\w'’-]+")


@dataclass(slots=True)
class Assessment:
    """A turn's complexity: the score, whether it reaches the threshold, and why."""

    score: float
    complex: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "complex" if self.complex else "simple"


def assess(text: str, previous: str = "", *, threshold: float = THRESHOLD) -> Assessment:
    """Score ``text`` (a user turn); ``previous`` is the person's turn before it, if any."""
    score, reasons = _score(text)
    n_words = len(_WORD.findall(text))
    if previous and n_words <= 8 and _FOLLOW_UP.match(text):
        before, _ = _score(previous)
        if before >= threshold:
            # "why?" after a hard question is as hard as the question
            score += before
            reasons.append("follows a complex turn")
    score = round(score, 2)
    return Assessment(score, score >= threshold, reasons)


def _score(text: str) -> tuple[float, list[str]]:
    reasons: list[str] = []
    score = 0.0
    n_words = len(_WORD.findall(text))
    if n_words >= 60:
        score += 2.0
        reasons.append(f"{n_words} words")
    elif n_words >= 30:
        score += 1.0
        reasons.append(f"{n_words} words")
    questions = max(text.count("?"), len(_ASKS.findall(text)))
    items = len(_LIST_ITEM.findall(text))
    if questions >= 2 or items >= 2:
        parts = max(questions, items)
        score += 1.0 + 0.5 * min(parts - 2, 2)
        reasons.append(f"{parts} {'questions' if questions >= items else 'parts'}")
    elif n_words >= 12 and _PARTS.search(text):
        score += 1.0
        reasons.append("several parts")
    for pattern, weight, why in _CUES:
        if pattern.search(text):
            score += weight
            reasons.append(why)
    if n_words >= 8 and "a why or how question" in reasons:
        score += 1.0  # "how does a transformer generate text?" wants an explanation, "how do you say hi?" does not
        reasons[reasons.index("a why or how question")] = "an open why or how question"
    if n_words <= 12 and _SMALL_TALK.match(text):
        score -= 2.0
        reasons.append("small talk")
    elif n_words <= 20 and _ABOUT_ME.match(text) and questions == 0:
        score -= 1.0
        reasons.append("about the person")
    elif n_words <= 5 and not reasons:
        reasons.append("short")
    return score, reasons
