"""List sorting and reversal (no tool: the model must do it). Level L: lists of L+2 digits."""

from __future__ import annotations

import random

from shoal.ulm.harness.base import Env, Task, register


@register
class Lists(Env):
    name = "lists"
    levels = (1, 2, 3, 4, 5, 6)
    description = "sort or reverse a list of L+2 digits"

    def make(self, rng: random.Random, level: int) -> Task:
        items = [str(rng.randint(0, 9)) for _ in range(level + 2)]
        verb = rng.choice(("sort", "reverse"))
        result = sorted(items) if verb == "sort" else items[::-1]
        answer = " ".join(result)
        return Task(self.name, level, f"Q: {verb} {' '.join(items)}\n", answer, f"A: {answer}\n")
