"""A guide for the swarm: a stronger model of the cluster helps N µLM samples, and what it adds is measured.

A guide is any ``Backend`` (a cluster view, the embedded SmolLM2, a llama.cpp
server). It helps in one of two ways, on the same tasks as the unguided swarm:

* **hint** — it reads the task and a few solved examples of the same world
  and writes the *first step* of the scratchpad (a calculator call, or the
  first item of the answer), constrained by a grammar to that shape. The µLM's
  N samples continue from the hint; the verifier scores them as usual. A bad
  hint is not trusted: its tool result is the calculator's, and a wrong answer
  still fails the verifier.
* **pick** — with no verifier at hand, one answer must be chosen from the N
  samples. The guide reads the task and the distinct answers (with how many
  samples gave each) and names one, constrained to a number.

``measure`` runs every arm on the same tasks in one run and states the token
budget of each: the guide's generated tokens are also spent on the unguided
swarm as extra samples (``best_of_budget``, ``vote_budget``), so a guide is
compared with what the same number of generated tokens buys without it. The
guide's prompt tokens and seconds are reported too: a 135M guide costs far
more per token than a 0.4M µLM.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from shoal.ulm.harness.base import CALL_CLOSE, Mix, Task, get_env, run_tools, training_tasks
from shoal.ulm.search import Candidate
from shoal.ulm.tokenizer import ULMTokenizer

Mode = Literal["hint", "pick"]

#: the shapes a first step may take: a calculator call, or the first item of the answer line
_SHAPES = {"call": r'"<calc>" [-+*0-9 ]+ "</calc>"', "answer": r'"A: " "-"? [0-9]+'}
_HINT = re.compile(r"^(<calc>[-+*0-9 ]+</calc>|A: -?\d+)")
_ANSWER = re.compile(r"^A: ?(.*)$", re.M)


def first_step(trace: str) -> str:
    """The first step of a trace: its first tool call, or its answer line up to the first item."""
    line = trace.lstrip().split("\n", 1)[0]
    if CALL_CLOSE in line:
        return line[: line.index(CALL_CLOSE) + len(CALL_CLOSE)]
    m = re.match(r"A: ?(-?\d+)", line)
    return f"A: {m.group(1)}" if m else ""


def answer_of(trace: str) -> str | None:
    found = _ANSWER.findall(trace)
    return found[0].strip() if found else None


@lru_cache(maxsize=16)
def _shots(env: str, level: int, k: int, seed: int) -> tuple[Task, ...]:
    return tuple(training_tasks(Mix([env], [level], n_tasks=k + 1, seed=seed)))


def _examples(task: Task, k: int, seed: int) -> list[Task]:
    """``k`` solved training tasks of the same world and level (never held-out prompts)."""
    return [t for t in _shots(task.env, task.level, k, seed) if t.prompt != task.prompt][:k]


def hint_messages(task: Task, examples: list[Task]) -> list[Any]:
    from shoal.types import ChatMessage

    shots = "\n\n".join(f"{t.prompt.strip()}\nFirst step: {first_step(t.gold)}" for t in examples)
    return [
        ChatMessage("system", "Write only the first step of the solution, in exactly the format of the examples."),
        ChatMessage("user", f"{shots}\n\n{task.prompt.strip()}\nFirst step:"),
    ]


def pick_messages(task: Task, answers: list[tuple[str, int]], n: int) -> list[Any]:
    from shoal.types import ChatMessage

    listed = "\n".join(f"{i + 1}) {a}   ({c} of {n} tries)" for i, (a, c) in enumerate(answers))
    return [
        ChatMessage("system", "You check answers. Reply with the number of the correct answer only."),
        ChatMessage("user", f"Task: {task.prompt.strip()[3:]}\nAnswers:\n{listed}\nWhich answer is correct?"),
    ]


@dataclass
class GuideCall:
    text: str
    prompt_tokens: int
    tokens: int


async def _ask(guide: Any, messages: list[Any], *, grammar: str, max_tokens: int) -> GuideCall:
    from shoal.backends.base import generate
    from shoal.types import GenerateRequest, Priority, SamplingParams

    req = GenerateRequest(
        messages=messages, grammar=grammar, priority=Priority.THINKING, owner="ulm-guide",
        sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0, repeat_penalty=1.0, stop=("\n",)),
    )
    done = await generate(guide, req)
    return GuideCall(done.text, done.prompt_tokens, done.completion_tokens)


def hint_grammar(examples: list[Task]) -> str:
    """A grammar for a first step of the shapes the examples' first steps have (a call, an answer item)."""
    shapes = sorted({"call" if CALL_CLOSE in first_step(t.gold) else "answer" for t in examples}) or sorted(_SHAPES)
    return 'root ::= " "? (' + " | ".join(_SHAPES[s] for s in shapes) + ")\n"


async def hint_for(guide: Any, task: Task, *, shots: int = 3, seed: int = 0) -> tuple[str, GuideCall]:
    """The guide's first step for ``task`` ("" when what it wrote is not a first step), and its cost."""
    examples = _examples(task, shots, seed)
    call = await _ask(guide, hint_messages(task, examples), grammar=hint_grammar(examples), max_tokens=32)
    m = _HINT.match(call.text.strip())
    return (m.group(1) if m else ""), call


async def pick_for(guide: Any, task: Task, cands: list[Candidate]) -> tuple[str | None, GuideCall | None]:
    """The answer the guide picks among the candidates' distinct answers (no guide call when they agree)."""
    answers = Counter(a for a in (answer_of(c.text) for c in cands) if a is not None)
    if len(answers) <= 1:
        return next(iter(answers), None), None
    # shown in a seeded random order, so "the first one" is no strategy
    listed = sorted(answers.items())
    random.Random(task.prompt).shuffle(listed)
    listed = listed[:9]
    grammar = "root ::= " + " | ".join(f'"{i + 1}"' for i in range(len(listed)))
    call = await _ask(guide, pick_messages(task, listed, len(cands)), grammar=grammar, max_tokens=2)
    digits = re.findall(r"\d", call.text)
    k = int(digits[0]) - 1 if digits else -1
    return (listed[k][0] if 0 <= k < len(listed) else None), call


def vote(cands: list[Candidate]) -> str | None:
    """The most common answer among the candidates (the first seen wins a tie)."""
    answers = [a for a in (answer_of(c.text) for c in cands) if a is not None]
    return Counter(answers).most_common(1)[0][0] if answers else None


def _prefix_prompt(task: Task, hint: str) -> tuple[str, str]:
    """What the µLM continues from, and the part of it that belongs to the trace: the hint (+ tool reply)."""
    prefix = hint + (run_tools(hint) or "") if hint else ""
    return task.prompt + prefix, prefix


@dataclass
class GuideReport:
    guide: str
    env: str
    level: int
    tasks: int
    n: int
    max_new: int
    pass_at_1: float  # the µLM alone, greedy
    best_of_n: float  # N samples, the verifier picks
    hinted_best_of_n: float  # N samples continuing from the guide's first step, the verifier picks
    best_of_budget: float  # N + extra samples: the guide's generated tokens spent on the µLM instead
    extra_samples: int
    hint_usable: float  # share of tasks where the guide wrote a first step of the right shape
    hint_right: float  # share where it is the gold trace's first step
    vote: float  # no verifier: the N samples' most common answer
    guide_pick: float  # no verifier: the guide's choice among the N samples' answers
    vote_budget: float  # no verifier: most common answer of N + extra_pick samples
    extra_pick: int
    ulm_tokens: float  # µLM tokens generated per task for N samples
    guide_tokens_hint: float  # guide tokens generated per task (hint)
    guide_prompt_tokens_hint: float
    guide_tokens_pick: float
    guide_prompt_tokens_pick: float
    seconds: dict[str, float] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def measure(
    gguf: Path,
    tok: ULMTokenizer,
    tasks: list[Task],
    guide: Any,
    *,
    guide_name: str = "guide",
    n: int = 8,
    temperature: float = 1.0,
    max_new: int = 128,
    seed: int = 0,
    modes: tuple[Mode, ...] = ("hint", "pick"),
    parallel: int = 4,
) -> GuideReport:
    """Every arm on the same tasks, one run: the µLM alone, guided by hints, and with a guide that picks."""
    from shoal.ulm.swarm import engine_sample_many

    if not tasks:
        raise ValueError("no tasks to measure")
    env = get_env(tasks[0].env)
    prompts = [t.prompt for t in tasks]
    ok = lambda t, text: env.verify(t, text).ok  # noqa: E731
    secs: dict[str, float] = {}
    gate = asyncio.Semaphore(parallel)  # the guide's engine decodes this many questions in one batch

    async def gated(coro: Any) -> Any:
        async with gate:
            return await coro

    t0 = time.perf_counter()
    greedy = await engine_sample_many(gguf, tok, prompts, n=1, temperature=0.0, max_new=max_new)
    plain = await engine_sample_many(gguf, tok, prompts, n=n, temperature=temperature, max_new=max_new, seed=seed)
    secs["ulm"] = time.perf_counter() - t0
    per_sample = max(1.0, sum(c.tokens for cs in plain for c in cs) / (len(tasks) * n))

    hints: list[str] = [""] * len(tasks)
    hint_calls: list[GuideCall] = []
    hinted: list[list[Candidate]] = [[] for _ in tasks]
    if "hint" in modes:
        t0 = time.perf_counter()
        got = await asyncio.gather(*(gated(hint_for(guide, t, seed=seed + 5)) for t in tasks))
        hints = [h for h, _ in got]
        hint_calls = [c for _, c in got]
        secs["guide_hint"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        pp = [_prefix_prompt(t, h) for t, h in zip(tasks, hints)]
        cont = await engine_sample_many(gguf, tok, [p for p, _ in pp], n=n, temperature=temperature, max_new=max_new, seed=seed)
        hinted = [[Candidate(pre + c.text, c.tokens) for c in cs] for (_, pre), cs in zip(pp, cont)]
        secs["ulm_hinted"] = time.perf_counter() - t0

    picks: list[str | None] = [None] * len(tasks)
    pick_calls: list[GuideCall] = []
    if "pick" in modes:
        t0 = time.perf_counter()
        chosen = await asyncio.gather(*(gated(pick_for(guide, t, cs)) for t, cs in zip(tasks, plain)))
        picks = [p for p, _ in chosen]
        pick_calls = [c for _, c in chosen if c is not None]
        secs["guide_pick"] = time.perf_counter() - t0

    m = len(tasks)
    g_hint = sum(c.tokens for c in hint_calls) / m
    g_pick = sum(c.tokens for c in pick_calls) / m
    # what the guide's generated tokens would have bought the µLM: that many more samples per task
    extra = math.ceil(g_hint / per_sample) if "hint" in modes else 0
    extra_pick = math.ceil(g_pick / per_sample) if "pick" in modes else 0
    more = max(extra, extra_pick)
    added: list[list[Candidate]] = [[] for _ in tasks]
    if more:
        t0 = time.perf_counter()
        added = await engine_sample_many(gguf, tok, prompts, n=more, temperature=temperature, max_new=max_new,
                                         seed=seed + 7919)
        secs["ulm_budget"] = time.perf_counter() - t0

    examples = []
    for t, g, cs, h, hs, p in list(zip(tasks, greedy, plain, hints, hinted, picks))[:5]:
        examples.append({
            "prompt": t.prompt.strip(), "answer": t.answer, "greedy": answer_of(g[0].text),
            "answers": [answer_of(c.text) for c in cs], "hint": h, "hinted": [c.text for c in hs],
            "hinted_ok": sum(ok(t, c.text) for c in hs), "vote": vote(cs), "guide_pick": p,
        })
    return GuideReport(
        guide=guide_name, env=env.name, level=tasks[0].level, tasks=m, n=n, max_new=max_new,
        pass_at_1=sum(ok(t, g[0].text) for t, g in zip(tasks, greedy)) / m,
        best_of_n=sum(any(ok(t, c.text) for c in cs) for t, cs in zip(tasks, plain)) / m,
        hinted_best_of_n=sum(any(ok(t, c.text) for c in cs) for t, cs in zip(tasks, hinted)) / m,
        best_of_budget=sum(any(ok(t, c.text) for c in cs + a[:extra]) for t, cs, a in zip(tasks, plain, added)) / m,
        extra_samples=extra,
        hint_usable=sum(bool(h) for h in hints) / m,
        hint_right=sum(bool(h) and h == first_step(t.gold) for t, h in zip(tasks, hints)) / m,
        vote=sum(vote(cs) == t.answer for t, cs in zip(tasks, plain)) / m,
        guide_pick=sum(p == t.answer for t, p in zip(tasks, picks)) / m,
        vote_budget=sum(vote(cs + a[:extra_pick]) == t.answer for t, cs, a in zip(tasks, plain, added)) / m,
        extra_pick=extra_pick,
        ulm_tokens=per_sample * n,
        guide_tokens_hint=g_hint, guide_prompt_tokens_hint=sum(c.prompt_tokens for c in hint_calls) / m,
        guide_tokens_pick=g_pick, guide_prompt_tokens_pick=sum(c.prompt_tokens for c in pick_calls) / m,
        seconds={k: round(v, 1) for k, v in secs.items()}, examples=examples,
    )


def measure_sync(*args: Any, **kw: Any) -> GuideReport:
    return asyncio.run(measure(*args, **kw))
