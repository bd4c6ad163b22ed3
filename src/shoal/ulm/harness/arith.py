"""Multi-digit arithmetic with the calculator tool. Level L: operands of L digits; level 4 has three operands."""

from __future__ import annotations

import random

from shoal.ulm.harness.base import Env, Task, calculator, register


@register
class Arith(Env):
    name = "arith"
    levels = (1, 2, 3, 4)
    description = "a op b (op in + - *) with L-digit operands; call <calc> and copy the result"

    def make(self, rng: random.Random, level: int) -> Task:
        digits = min(level, 3)
        n_ops = 2 if level >= 4 else 1
        nums = [str(rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)) for _ in range(n_ops + 1)]
        ops = [rng.choice("+-*") for _ in range(n_ops)]
        expr = nums[0] + "".join(o + n for o, n in zip(ops, nums[1:]))
        answer = calculator(expr)
        gold = f"<calc>{expr}</calc>={answer}\nA: {answer}\n"
        return Task(self.name, level, f"Q: {expr}\n", answer, gold)
