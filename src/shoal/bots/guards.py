"""Reply guards: what a small model's reply must not do, checked as it streams.

SmolLM2-135M answers an English message about a Portuguese city in broken
Portuguese, repeats the user's introduction as if it were its own, tells the
user's facts as its own life ("I used to work in a hospital"), and loops
("200g spaghetti" twelve times). Each of those is a check here, cheap enough
to run on every streamed chunk:

* ``language`` — the reply is in the language of the user's message;
* ``echo`` — the reply does not repeat the user's message back;
* ``identity`` — the reply makes no first-person claim of a life (a home, a
  job, a family, a pet, a name other than its own), least of all one of the
  user's stored facts;
* ``loop`` — the reply does not repeat itself (stopped while streaming).

The conversation bot regenerates once with the corrective ``note`` of the
failed check, then falls back to a short safe reply (``fallback``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Iterable

# -------------------------------------------------------------------- language
#: frequent function words, enough to tell these languages apart in a sentence
_STOP = {
    "en": "the and is are was were you your i my me it this that to of in for on with have has do does not what how "
    "can will would be a an at so but just there they we he she if about from or as by all like know think yes no".split(),
    "fr": "le la les et est sont je tu vous il elle nous mon ma mes ton ta un une des du de dans pour sur avec "
    "pas ne que qui quoi comment oui non mais ou donc au aux ce cette c'est j'ai suis très bien merci bonjour".split(),
    "es": "el la los las y es son yo tú usted él ella nosotros mi mis tu un una unos de del en para por con no "
    "que qué cómo sí pero o muy bien gracias hola está estoy soy tengo al lo le se su hay".split(),
    "pt": "o a os as e é são eu tu você ele ela nós meu minha meus um uma de do da dos das em no na para por com "
    "não que como sim mas ou muito bem obrigado obrigada olá está estou sou tenho ao se seu sua há".split(),
    "de": "der die das und ist sind ich du sie er wir mein meine dein ein eine einen nicht was wie ja nein aber "
    "oder sehr gut danke hallo mit für auf in zu von bin habe hast ist es den dem des im am auch".split(),
    "it": "il lo la i gli le e è sono io tu lei lui noi mio mia un una di del della in per con non che come sì "
    "ma o molto bene grazie ciao sto sei ho hai al nel anche questo".split(),
    "nl": "de het een en is zijn ik jij je u hij zij wij mijn niet wat hoe ja nee maar of heel goed dank hallo "
    "met voor op in te van ben heb dat die er ook".split(),
}
_STOPSETS = {lang: frozenset(words) for lang, words in _STOP.items()}
_MARKS = {"pt": "ãõç", "es": "ñ¿¡", "de": "ßäöü", "fr": "èêàùûœç", "it": "ìò"}
NAMES = {"en": "English", "fr": "French", "es": "Spanish", "pt": "Portuguese", "de": "German", "it": "Italian", "nl": "Dutch"}
_WORDS = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.U)


def language(text: str) -> tuple[str | None, float]:
    """The language of ``text`` and a confidence in [0, 1]; (None, 0) when it cannot tell."""
    words = [w.lower() for w in _WORDS.findall(text)]
    if len(words) < 3:
        return None, 0.0
    scores: dict[str, float] = {}
    for lang, stop in _STOPSETS.items():
        scores[lang] = sum(1.0 for w in words if w in stop)
    low = text.lower()
    for lang, marks in _MARKS.items():
        scores[lang] += 0.5 * sum(low.count(ch) for ch in marks)
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    if top < 2:
        return None, 0.0
    return best, min(1.0, (top - second) / max(top, 1.0) + min(top, 8) / 16)


# -------------------------------------------------------------------- the checks
@dataclass(frozen=True, slots=True)
class Verdict:
    check: str
    ok: bool
    detail: str = ""
    #: for a loop: the reply up to where the repetition starts
    keep: str | None = None


NOTES = {
    "language": "Reply in {lang}, the language of the user's last message.",
    "echo": "Do not repeat the user's message. Answer it in your own words.",
    "identity": (
        "You are {bot}, an AI assistant: you have no home, job, family or pets. The facts in this conversation are "
        "the user's — say \"you\", never \"I\", about them."
    ),
    "loop": "Do not repeat yourself. Keep the answer short.",
    "empty": "Answer the user's last message in one or two sentences.",
}

_FIRST_PERSON_LIFE = re.compile(
    r"\b(?:i (?:live|lived|grew up|was born|moved|reside)\b"
    r"|i (?:work|worked|used to work|am working|'m working)\s+(?:as|at|in|for)\b"
    r"|i (?:used to be|was once|am|'m) (?:a|an) (?:[a-z]+ ){0,2}?(?:nurse|teacher|doctor|engineer|developer|chef|lawyer|"
    r"student|pilot|writer|artist|designer|manager|scientist|farmer|driver|mechanic|vet|dentist|accountant|barista|"
    r"waiter|waitress|musician|programmer|carpenter|plumber|electrician|pharmacist|photographer|firefighter|soldier)\b"
    r"|my (?:name is|name's|wife|husband|partner|son|daughter|kids|children|mum|mom|dad|mother|father|brother|sister|"
    r"dog|cat|pet|job|boss|house|home|flat|apartment|hometown|birthday)\b"
    r"|i have (?:a|an|two|three) (?:dog|cat|pet|son|daughter|wife|husband|kids|children|brother|sister)s?\b"
    r"|i(?:'m| am) \d{1,3}(?: years old)?\b"
    r"|i(?:'m| am) allergic to\b)",
    re.I,
)
_SENT = re.compile(r"[^.!?\n]+[.!?\n]?")
_QUOTE = re.compile(r"“[^”]*”|\"[^\"]*\"")


@dataclass
class ReplyGuard:
    """The checks for one reply: feed it the text so far while streaming, then ``final``."""

    user_text: str
    #: values of the user's facts (stored, and stated in this message)
    user_values: list[str] = field(default_factory=list)
    #: the bot's own names (a claim to be "shoal" is not an invented self)
    own_names: tuple[str, ...] = ("shoal",)
    lang: str | None = None
    _done_sentences: int = 0

    def __post_init__(self) -> None:
        if self.lang is None:
            guess, confidence = language(self.user_text)
            if guess and confidence >= 0.5:
                self.lang = guess
            elif guess is None and _WORDS.findall(self.user_text) and re.fullmatch(r"[\x00-\x7f]*", self.user_text):
                self.lang = "en"  # a short ASCII message: English, unless it clearly says otherwise

    # -- streaming -----------------------------------------------------------------
    def feed(self, text: str) -> Verdict | None:
        """A failed verdict that should stop the stream now, or None to go on."""
        loop = self.loop(text)
        if loop is not None:
            return loop
        complete = [m.group(0) for m in _SENT.finditer(text) if m.group(0).rstrip()[-1:] in ".!?\n"]
        if len(complete) == self._done_sentences:
            return None
        self._done_sentences = len(complete)
        for check in (self.identity, self.echo, self.language):
            v = check(text)
            if not v.ok:
                return v
        return None

    def final(self, text: str) -> list[Verdict]:
        """Every check on the whole reply."""
        loop = self.loop(text)
        return [
            Verdict("empty", bool(text.strip()), "" if text.strip() else "the reply is empty"),
            self.language(text),
            self.echo(text),
            self.identity(text),
            loop if loop is not None else Verdict("loop", True),
        ]

    # -- the checks ------------------------------------------------------------------
    def language(self, text: str) -> Verdict:
        if self.lang is None:
            return Verdict("language", True, "the user's language is unclear")
        got, confidence = language(text)
        if got is None or got == self.lang or confidence < 0.45:
            return Verdict("language", True)
        return Verdict("language", False, f"the reply is in {NAMES.get(got, got)}, the user wrote in {NAMES.get(self.lang, self.lang)}")

    def echo(self, text: str) -> Verdict:
        user = [w.lower() for w in _WORDS.findall(self.user_text)]
        reply = [w.lower() for w in _WORDS.findall(text)]
        if len(user) < 4 or not reply:
            return Verdict("echo", True)
        m = difflib.SequenceMatcher(None, user, reply, autojunk=False).find_longest_match(0, len(user), 0, len(reply))
        if m.size >= max(5, int(0.6 * len(user))) or (m.size >= 4 and m.size >= 0.8 * len(user)):
            return Verdict("echo", False, f"repeats {m.size} of the user's {len(user)} words: “{' '.join(reply[m.b:m.b + m.size])}”")
        return Verdict("echo", True)

    def identity(self, text: str) -> Verdict:
        # a verbatim quote (a thinker's thought in "what are you thinking?") is someone else's words, not a claim
        text = _QUOTE.sub(" ", text)
        for sentence in _SENT.findall(text):
            if not _FIRST_PERSON_LIFE.search(sentence):
                continue
            low = sentence.lower()
            if any(re.search(rf"\b(?:i'm|i am|my name is|call me)\s+{re.escape(n.lower())}\b", low) for n in self.own_names):
                continue
            theirs = [v for v in self.user_values if v and re.search(rf"(?<!\w){re.escape(v.lower())}(?!\w)", low)]
            if theirs:
                return Verdict("identity", False, f"claims the user's {theirs[0]!r} as its own: “{sentence.strip()}”")
            return Verdict("identity", False, f"invents a life of its own: “{sentence.strip()}”")
        return Verdict("identity", True)

    @staticmethod
    def loop(text: str) -> Verdict | None:
        """A repetition: the same line or sentence three times, or the same 4 words five times."""
        lines = [ln.strip().lower() for ln in re.split(r"[\n]+|(?<=[.!?])\s+", text) if ln.strip()]
        seen: dict[str, int] = {}
        for i, ln in enumerate(lines):
            key = re.sub(r"\W+", " ", ln).strip()
            if len(key) < 3:
                continue
            seen[key] = seen.get(key, 0) + 1
            if seen[key] >= 3:
                return Verdict("loop", False, f"“{ln[:60]}” three times", keep=_cut_at_repeat(text, key))
        words = [w.lower() for w in _WORDS.findall(text)]
        grams: dict[tuple[str, ...], int] = {}
        for i in range(len(words) - 3):
            g = tuple(words[i : i + 4])
            grams[g] = grams.get(g, 0) + 1
            if grams[g] >= 5:
                return Verdict("loop", False, f"“{' '.join(g)}” five times", keep=_cut_at_repeat(text, " ".join(g)))
        return None


def _cut_at_repeat(text: str, key: str) -> str:
    """``text`` up to the second time ``key`` starts (the first occurrence stays)."""
    low = re.sub(r"\W+", " ", text.lower())
    first = low.find(key)
    second = low.find(key, first + len(key)) if first >= 0 else -1
    if second <= 0:
        return text
    # map the position in the normalised text back onto the original (same number of words)
    n_words = len(low[:second].split())
    spans = list(re.finditer(r"\S+", text))
    cut = spans[n_words].start() if n_words < len(spans) else len(text)
    return text[:cut].rstrip(" ,;:-\n")


# -------------------------------------------------------------------- when all else fails
_FALLBACK = {
    "en": ("Nice to meet you, {name}! What would you like to talk about?", "Thanks for telling me. What would you like to do next?",
           "I'm not sure I can answer that well. Could you tell me a bit more?"),
    "fr": ("Enchanté, {name} ! De quoi veux-tu parler ?", "Merci de me l'avoir dit. Que veux-tu faire ensuite ?",
           "Je ne suis pas sûr de bien pouvoir répondre. Peux-tu m'en dire un peu plus ?"),
    "es": ("¡Encantado, {name}! ¿De qué quieres hablar?", "Gracias por contármelo. ¿Qué quieres hacer ahora?",
           "No estoy seguro de poder responder bien. ¿Puedes contarme un poco más?"),
    "pt": ("Prazer em conhecer-te, {name}! Sobre o que queres falar?", "Obrigado por me dizeres. O que queres fazer a seguir?",
           "Não tenho a certeza de conseguir responder bem. Podes contar-me um pouco mais?"),
    "de": ("Schön, dich kennenzulernen, {name}! Worüber möchtest du reden?", "Danke, dass du mir das erzählst. Was möchtest du als Nächstes tun?",
           "Ich bin nicht sicher, ob ich das gut beantworten kann. Kannst du mir etwas mehr erzählen?"),
    "it": ("Piacere di conoscerti, {name}! Di cosa vuoi parlare?", "Grazie per avermelo detto. Cosa vuoi fare adesso?",
           "Non sono sicuro di poter rispondere bene. Puoi dirmi qualcosa di più?"),
    "nl": ("Leuk je te ontmoeten, {name}! Waar wil je over praten?", "Bedankt dat je me dat vertelt. Wat wil je nu doen?",
           "Ik weet niet zeker of ik dat goed kan beantwoorden. Kun je me iets meer vertellen?"),
}


def fallback(user_text: str, lang: str | None, name: str | None, *, question: bool) -> str:
    """A short, safe reply in the user's language when the model's reply failed its checks twice."""
    greet, thanks, unsure = _FALLBACK.get(lang or "en", _FALLBACK["en"])
    if name and not question:
        return greet.format(name=name)
    return unsure if question else thanks


def summary(verdicts: Iterable[Verdict]) -> dict[str, str]:
    """{check: "ok" | why it failed} for a ``reply.check`` event."""
    return {v.check: "ok" if v.ok else v.detail for v in verdicts}
