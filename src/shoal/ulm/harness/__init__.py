"""The world harness: environments a µLM acts on, with tools and a verifier (docs/ulm.md).

    from shoal.ulm.harness import get_env
    env = get_env("arith")
    task = env.task(random.Random(0), level=2)
    env.verify(task, "<calc>12+34</calc>=46\\nA: 46")   # Verdict(ok=True, ...)
"""

from shoal.ulm.harness.base import ENVS, Env, Task, Verdict, get_env, heldout, run_tools, training_text

__all__ = ["ENVS", "Env", "Task", "Verdict", "get_env", "heldout", "run_tools", "training_text"]
