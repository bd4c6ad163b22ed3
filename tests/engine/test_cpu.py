"""The CPU budget's view of other processes: real busy processes, real /proc/stat."""

from __future__ import annotations

import subprocess
import sys
import time

from shoal.engine.cpu import CpuBudget

SPIN = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"


def test_other_processes_keeping_the_cores_busy_cost_the_engine_threads() -> None:
    budget = CpuBudget(cores=2)
    budget.SAMPLE_EVERY = 0.2
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(2)]
    try:
        budget.other_cores()  # first sample
        for _ in range(10):
            time.sleep(0.25)
            budget.other_cores()
        # two busy processes on two cores: at least a core's worth of them is seen
        assert budget.other_cores() > 0.5
        assert budget.threads_for(2, contention=True) == 1
        # without contention only what shoal itself borrows counts
        assert budget.threads_for(2) == 2
    finally:
        for p in spinners:
            p.kill()
            p.wait()

