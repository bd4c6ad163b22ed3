"""A multi-step puzzle: apply L operations to a start number, one calculator call per step."""

from __future__ import annotations

import random

from shoal.ulm.harness.base import Env, Task, calculator, register


@register
class Chain(Env):
    name = "chain"
    levels = (1, 2, 3, 4, 5)
    description = "a start number and L steps (+n, -n, *n); the scratchpad carries the running value"

    def make(self, rng: random.Random, level: int) -> Task:
        start = str(rng.randint(1, 20))
        steps = []
        for _ in range(level):
            op = rng.choice("+-*")
            steps.append(op + str(rng.randint(2, 5) if op == "*" else rng.randint(1, 30)))
        value, lines = start, []
        for step in steps:
            expr = value + step
            value = calculator(expr)
            lines.append(f"<calc>{expr}</calc>={value}\n")
        return Task(self.name, level, f"Q: {start} {' '.join(steps)}\n", value, "".join(lines) + f"A: {value}\n")
