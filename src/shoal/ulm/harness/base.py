"""Tasks, the text protocol for tools, the scratchpad format, and the verifier.

A task is a prompt line ``Q: ...``. A solution ("trace") is a scratchpad the
harness teaches and checks, then one answer line:

    Q: 7 +3 *2 -4
    <calc>7+3</calc>=10          a tool call; the harness writes "=10", not the model
    <calc>10*2</calc>=20
    <calc>20-4</calc>=16
    A: 16

The model calls the calculator by writing ``<calc>EXPR</calc>``; generation
pauses there, the harness appends ``=RESULT`` and a new line, and the model
goes on. The verifier gives feedback a trainer (or a person) can act on: the
answer is right, wrong (and what was expected), or missing; and a scratchpad
that writes a tool result itself instead of calling the tool is rejected.

Held-out sets are fixed by seed (``heldout``) and never produced by the
training generator (``training_text`` skips their prompts).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable, ClassVar

from shoal.errors import BadInput

CALL_OPEN, CALL_CLOSE = "<calc>", "</calc>"
_CALL = re.compile(r"<calc>([^<>\n]*)</calc>(=[^\n]*)?")
_EXPR = re.compile(r"^\s*-?\d+(\s*[-+*]\s*-?\d+)*\s*$")
#: a fixed seed per held-out set, far from any training seed
HELDOUT_SEED = 10_007


@dataclass(frozen=True)
class Task:
    env: str
    level: int
    prompt: str  # "Q: ...\n"
    answer: str
    gold: str  # the reference trace (scratchpad + answer line), what training teaches


@dataclass(frozen=True)
class Verdict:
    ok: bool
    feedback: str
    answer: str | None = None


def calculator(expr: str) -> str:
    """The calculator tool: integers with + - * (left to right, with precedence), nothing else."""
    if not _EXPR.match(expr) or len(expr) > 64:
        return "error"
    tokens = re.findall(r"(?<!\d)-?\d+|[-+*]", expr.replace(" ", ""))
    # fold products first (precedence), then sums; no eval()
    terms: list[int] = [int(tokens[0])]
    ops: list[str] = []
    for op, num in zip(tokens[1::2], tokens[2::2]):
        if op == "*":
            terms[-1] *= int(num)
        else:
            ops.append(op)
            terms.append(int(num))
    total = terms[0]
    for op, t in zip(ops, terms[1:]):
        total = total + t if op == "+" else total - t
    return str(total)


def run_tools(text: str) -> str | None:
    """If ``text`` ends with a tool call, the harness's reply to append (``=RESULT\\n``); else None."""
    if not text.endswith(CALL_CLOSE):
        return None
    start = text.rfind(CALL_OPEN)
    if start < 0:
        return "=error\n"
    return f"={calculator(text[start + len(CALL_OPEN) : -len(CALL_CLOSE)])}\n"


class Env:
    """An environment: generates tasks by level, writes gold traces, verifies answers."""

    name: ClassVar[str]
    levels: ClassVar[tuple[int, ...]]
    description: ClassVar[str]

    def make(self, rng: random.Random, level: int) -> Task:
        raise NotImplementedError

    def task(self, rng: random.Random, level: int) -> Task:
        if level not in self.levels:
            raise BadInput(
                f"environment '{self.name}' has no level {level}",
                hint=f"levels: {', '.join(map(str, self.levels))}",
            )
        return self.make(rng, level)

    def verify(self, task: Task, trace: str) -> Verdict:
        """Check a model's trace (what follows the prompt): tool results real, answer right."""
        for m in _CALL.finditer(trace):
            expr, shown = m.group(1), m.group(2)
            if shown is not None and shown[1:].strip() != calculator(expr):
                return Verdict(False, f"tool result for '{expr}' was written by the model, not the calculator")
        answers = re.findall(r"^A: ?(.*)$", trace, flags=re.M)
        if not answers:
            return Verdict(False, "no answer line ('A: ...')")
        got = answers[0].strip()
        if got == task.answer:
            return Verdict(True, "correct", got)
        return Verdict(False, f"wrong answer: expected {task.answer}, got {got}", got)


ENVS: dict[str, Env] = {}


def register(cls: type[Env]) -> type[Env]:
    ENVS[cls.name] = cls()
    return cls


def get_env(name: str) -> Env:
    from shoal.ulm.harness import arith, lists, puzzle  # noqa: F401  (registers the built-ins)

    try:
        return ENVS[name]
    except KeyError:
        raise BadInput(
            f"the harness has no environment '{name}'", hint=f"environments: {', '.join(sorted(ENVS))}"
        ) from None


def heldout(env: str, level: int, n: int = 100, seed: int = HELDOUT_SEED) -> list[Task]:
    """The held-out tasks of ``env`` at ``level``: the same list on every machine, every run."""
    e = get_env(env)
    rng = random.Random(f"{seed}:{env}:{level}")
    out: list[Task] = []
    seen: set[str] = set()
    for _ in range(n * 20):
        t = e.task(rng, level)
        if t.prompt not in seen:
            seen.add(t.prompt)
            out.append(t)
        if len(out) == n:
            break
    return out


@dataclass
class Mix:
    """What a training corpus draws from: environments x levels, how many tasks, the seed."""

    envs: list[str]
    levels: list[int]
    n_tasks: int = 20_000
    seed: int = 0
    heldout_n: int = 100
    extra: Callable[[Task], str] | None = field(default=None, repr=False)


def training_tasks(mix: Mix) -> list[Task]:
    """Training tasks of the mix (seeded), never one whose prompt is in a held-out set."""
    rng = random.Random(f"train:{mix.seed}")
    banned = {t.prompt for e in mix.envs for lv in mix.levels if lv in get_env(e).levels for t in heldout(e, lv, mix.heldout_n)}
    envs = [get_env(e) for e in mix.envs]
    out: list[Task] = []
    while len(out) < mix.n_tasks:
        env = rng.choice(envs)
        levels = [lv for lv in mix.levels if lv in env.levels]
        t = env.task(rng, rng.choice(levels))
        if t.prompt not in banned:
            out.append(t)
    return out


def training_text(mix: Mix) -> list[str]:
    """Gold traces of the training tasks, one document per task."""
    return [t.prompt + t.gold for t in training_tasks(mix)]
