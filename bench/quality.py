"""Does the assistant feel right on the shipped model? Facts, memory answers, and reply checks.

Data written by hand for this bench (bench/data/quality/, never generated
from templates):

* ``messages.json`` — single messages with the facts a careful labeller finds
  in them (or none: questions, requests, third parties, chit-chat);
* ``heldout.json`` — more of the same, by other people in other words (a check
  that extraction generalises; reported apart);
* ``conversations.json`` — scripted chats with expectations per turn.

Part 1 runs shoal's memory extraction (rules + the embedded model under a
JSON schema, as the memory bot does) on every message and scores recall and
precision of the facts, and facts stated on questions and requests (which
must be none). Part 2 plays every conversation through a real swarm on the
embedded SmolLM2-135M and checks every reply: in the user's language, no echo
of the user, no first-person claim of the user's facts or an invented life,
no loop, memory questions answered with exactly what was said, "what are you
thinking about?" answered with the live thought. Part 3 times the first token
of a chat turn.

Baseline, in the same run: today's behaviour — the extraction before issue 12
(``bench/_baseline_extract.py``) and a conversation bot with ``guards`` and
``answers`` off (``--baseline`` runs only that).

    .venv/bin/python bench/quality.py                   # everything, new and baseline
    .venv/bin/python bench/quality.py --conversations 8 # a quicker look
    .venv/bin/python bench/quality.py --baseline        # only today's behaviour
    .venv/bin/python bench/quality.py --no-baseline     # only the new mechanisms
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "data" / "quality"
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
console = Console(stderr=True)

CONFIG = """
[[servers]]
name = "local"
kind = "embedded"

[[bots]]
name = "conversation"
role = "conversation"
instruction = "You are shoal, a friendly and concise assistant. Answer in one to three sentences."
max_tokens = 80
history = 8
guards = {guards}
answers = {answers}

[[bots]]
name = "primary"
role = "primary"
max_tokens = 48
temperature = 0.0

[[bots]]
name = "thinker"
role = "thinker"
max_tokens = 48

[[bots]]
name = "memory"
role = "memory"
max_tokens = 96
temperature = 0.0

[routing]
always = ["memory"]
settle_timeout = 120

[[routing.rules]]
name = "about the user"
when = "personal"
send = ["thinker"]

[[routing.rules]]
name = "questions"
when = "question"
send = ["thinker"]

[memory]
crush_after = 0
"""


# ------------------------------------------------------------------ fact matching
# the same scoring `shoal learn extraction` judges its adapter by
from shoal.learn.extraction import FactScore, same_fact, score_facts  # noqa: E402,F401


async def extract_all(items: list[dict[str, Any]], backend: Any, *, baseline: bool, progress: Progress, label: str) -> list[list[tuple[str, str]]]:
    """Facts for every message, the way the memory bot finds them: rules, then the model, then grounding."""
    from shoal.memory.pipeline import ModelExtractor

    if baseline:
        import _baseline_extract as ex  # type: ignore[import-not-found]
    else:
        from shoal.memory import extract as ex

    extractor = ModelExtractor(backend, instruction="You extract facts the user states about themselves.", max_tokens=96)
    if baseline:
        # today's prompt and schema (attribute list) for the model's candidates
        extractor_messages = ex.extraction_messages
    out = []
    task = progress.add_task(label, total=len(items))
    for item in items:
        if baseline:
            cands = await _baseline_candidates(extractor, extractor_messages, ex, item["text"])
        else:
            cands = await extractor(item["text"])
        facts, _rejected = ex.extract(item["text"], cands)
        out.append([(f.attribute, f.value) for f in facts])
        progress.advance(task)
    return out


async def _baseline_candidates(extractor: Any, messages_fn: Callable[..., Any], ex: Any, text: str) -> list[Any]:
    from shoal.backends.base import generate
    from shoal.types import ChatMessage, GenerateRequest, Priority, SamplingParams

    msgs = [ChatMessage(r, c) for r, c in messages_fn(extractor.instruction, text)]  # type: ignore[arg-type]
    for _ in range(2):
        req = GenerateRequest(
            messages=msgs, sampling=SamplingParams(max_tokens=extractor.max_tokens, temperature=0.0),
            json_schema=ex.FACT_SCHEMA, priority=Priority.MEMORY,
        )
        out = await generate(extractor.backend, req)
        try:
            return list(ex.parse_model_output(out.text))
        except ValueError:
            continue
    return []


# ------------------------------------------------------------------ conversations
_DONT_KNOW = re.compile(
    r"\b(?:don'?t know|do not know|not sure|haven'?t told me|no idea|can'?t remember|don'?t remember|"
    r"not (?:yet )?(?:been )?told|nothing (?:yet|stored)|no (?:information|record))\b",
    re.I,
)


@dataclass
class CheckScore:
    by_check: dict[str, list[bool]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)

    def add(self, check: str, ok: bool, why: str = "") -> None:
        self.by_check.setdefault(check, []).append(ok)
        if not ok:
            self.failures.append(f"{check}: {why}")

    @property
    def passed(self) -> float:
        every = [x for v in self.by_check.values() for x in v]
        return sum(every) / len(every) if every else 1.0

    def rate(self, check: str) -> float:
        v = self.by_check.get(check, [])
        return sum(v) / len(v) if v else 1.0


async def play(conversations: list[dict[str, Any]], *, guards: bool, progress: Progress, label: str) -> CheckScore:
    from shoal.bots.conversation import THINKING_QUESTION
    from shoal.bots.guards import ReplyGuard, language
    from shoal.config import Env, Settings, parse_config
    from shoal.memory.answers import memory_question
    from shoal.runtime.swarm import Swarm

    score = CheckScore()
    with tempfile.TemporaryDirectory(prefix="shoal-quality-") as tmp:
        text = CONFIG.format(guards=str(guards).lower(), answers=str(guards).lower())
        (Path(tmp) / "shoal.toml").write_text(text)
        env = Env(Settings(home=Path(tmp)), parse_config(text))
        task = progress.add_task(label, total=sum(len(c["turns"]) for c in conversations))
        async with Swarm(env) as swarm:
            await swarm.warm_up()
            for c in conversations:
                user = await swarm.conversations.ensure_user(f"person-{c['id']}")
                conv = (await swarm.conversations.create_conversation(user.id)).id
                for i, turn in enumerate(c["turns"]):
                    where = f"{c['id']}#{i + 1}"
                    listener = swarm.listen(conv)
                    sent = time.time()
                    result = await swarm.run_turn(conv, user.id, turn["user"], timeout=240)
                    first = None
                    while True:  # the first delta of this turn's reply, from what the listener saw
                        try:
                            ev = await listener.get(timeout=0.01)
                        except asyncio.TimeoutError:
                            break
                        if ev.kind == "reply.delta" and ev.turn == result.turn and first is None:
                            first = ev.ts
                    listener.close()
                    # the model's first token: turns answered from stored data are not timed (in either mode)
                    asked = memory_question(turn["user"]) or THINKING_QUESTION.search(turn["user"])
                    if first is not None and not asked:
                        score.ttft_ms.append((first - sent) * 1000)
                    reply = result.reply
                    expect = turn.get("expect", {})
                    facts = await swarm.memories.facts(user.id)
                    values = [v for m in facts for _, v in m.live_facts()]
                    judge = ReplyGuard(turn["user"], user_values=values, lang=expect.get("language") or "en")
                    # verbatim quotes (a thought quoted in "what are you thinking?") are the quoted one's language
                    got, confidence = language(re.sub(r"“[^”]*”", " ", reply))
                    want = expect.get("language") or "en"
                    score.add("language", got in (None, want) or confidence < 0.45, f"{where} {got} ≠ {want}: {reply[:80]!r}")
                    echo = judge.echo(reply)
                    score.add("no_echo", echo.ok, f"{where} {echo.detail}")
                    ident = judge.identity(reply)
                    score.add("no_identity_confusion", ident.ok, f"{where} {ident.detail}")
                    score.add("no_loop", judge.loop(reply) is None, f"{where} loop: {reply[:80]!r}")
                    if "remembers" in expect:
                        need = expect["remembers"].get("must_include", [])
                        never = expect["remembers"].get("must_not_include", [])
                        low = reply.lower()
                        missing = [x for x in need if x.lower() not in low]
                        extra = [x for x in never if re.search(rf"(?<!\w){re.escape(x.lower())}(?!\w)", low)]
                        score.add("memory_answer", not missing and not extra, f"{where} missing {missing} extra {extra}: {reply[:120]!r}")
                    if expect.get("unknown"):
                        score.add("memory_unknown", bool(_DONT_KNOW.search(reply)), f"{where} claims to know: {reply[:120]!r}")
                    if expect.get("thinking"):
                        thoughts = [t for t in await swarm.conversations.thoughts(conv) if t["text"]]
                        quoted = any(_quotes(reply, t["text"]) for t in thoughts)
                        score.add("thinking_quoted", quoted, f"{where} no thought quoted: {reply[:120]!r}")
                    progress.advance(task)
    return score


def _quotes(reply: str, thought: str) -> bool:
    """Whether ``reply`` quotes ``thought`` (eight words in a row of it, or all of a shorter one)."""
    r = " ".join(re.findall(r"\w+", reply.lower()))
    words = re.findall(r"\w+", thought.lower())
    n = min(8, len(words))
    return any(" ".join(words[i : i + n]) in r for i in range(0, max(1, len(words) - n + 1)))


# ------------------------------------------------------------------ main
async def run(a: argparse.Namespace) -> dict[str, Any]:
    from shoal.backends.embedded import EmbeddedBackend

    messages = json.loads((DATA / "messages.json").read_text())
    heldout = json.loads((DATA / "heldout.json").read_text())
    conversations = json.loads((DATA / "conversations.json").read_text())
    if a.messages:
        messages = messages[: a.messages]
        heldout = heldout[: max(1, a.messages // 3)]
    if a.conversations is not None:
        conversations = conversations[: a.conversations]
    modes = [True] if a.baseline else [False] if a.no_baseline else [False, True]
    out: dict[str, Any] = {}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:
        backend = EmbeddedBackend("local")
        try:
            for baseline in modes:
                tag = "baseline_" if baseline else ""
                preds = await extract_all(messages, backend, baseline=baseline, progress=progress, label=f"{tag or 'new '}facts")
                held = await extract_all(heldout, backend, baseline=baseline, progress=progress, label=f"{tag or 'new '}held-out facts")
                out[tag + "facts"] = score_facts(messages, preds)
                out[tag + "heldout"] = score_facts(heldout, held)
        finally:
            await backend.aclose()
        if conversations:
            for baseline in modes:
                tag = "baseline_" if baseline else ""
                out[tag + "checks"] = await play(conversations, guards=not baseline, progress=progress, label=f"{tag or 'new '}conversations")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description="Fact extraction and reply quality on the shipped model, against today's behaviour.")
    p.add_argument("--baseline", action="store_true", help="run only today's behaviour (new mechanisms off)")
    p.add_argument("--no-baseline", action="store_true", help="run only the new mechanisms (a quicker look while working)")
    p.add_argument("--messages", type=int, default=0, help="only the first N labelled messages (0: all)")
    p.add_argument("--conversations", type=int, default=None, help="only the first N conversations (0: none)")
    p.add_argument("--show", type=int, default=12, help="print this many misses / failures of each kind")
    a = p.parse_args()
    t0 = time.monotonic()
    out = asyncio.run(run(a))
    figures: dict[str, Any] = {}
    for tag in ("", "baseline_"):
        f: FactScore | None = out.get(tag + "facts")
        if f is None:
            continue
        h: FactScore = out[tag + "heldout"]
        figures.update({
            f"{tag}fact_recall": round(f.recall, 3), f"{tag}fact_precision": round(f.precision, 3),
            f"{tag}false_facts_on_questions": f.false_on_questions,
            f"{tag}heldout_fact_recall": round(h.recall, 3), f"{tag}heldout_fact_precision": round(h.precision, 3),
            f"{tag}heldout_false_facts_on_questions": h.false_on_questions,
        })
        c: CheckScore | None = out.get(tag + "checks")
        if c is not None:
            figures[f"{tag}reply_checks_pass"] = round(c.passed, 3)
            for check in sorted(c.by_check):
                figures[f"{tag}{check}"] = round(c.rate(check), 3)
            figures[f"{tag}ttft_p50_ms"] = round(statistics.median(c.ttft_ms), 1) if c.ttft_ms else None
        if a.show:
            for what, rows in (("missed", f.misses), ("wrong", f.wrong), ("held-out missed", h.misses), ("held-out wrong", h.wrong)):
                for r in rows[: a.show]:
                    console.print(f"[dim]{tag}{what}:[/] {r}")
            for r in (c.failures if c else [])[: a.show * 2]:
                console.print(f"[dim]{tag}failed[/] {r}")
    table = Table("figure", "new", "baseline")
    for k, v in figures.items():
        if not k.startswith("baseline_"):
            table.add_row(k, str(v), str(figures.get("baseline_" + k, "")))
    console.print(table)
    figures["seconds"] = round(time.monotonic() - t0, 1)
    print(" ".join(f"{k}: {v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
