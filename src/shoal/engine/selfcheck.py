"""Does the installed llama.cpp decode on this CPU? Checked once at set-up (``make install``).

llama-cpp-python compiles llama.cpp with ``-march=native``. On a CPU that
reports Intel AMX, ggml then repacks the weights for its AMX kernels, and on
hosts that report AMX without granting its tile state (seen on a 2-core
Sapphire Rapids VM) the first matrix multiply dies with SIGSEGV in
``ggml_backend_amx_mul_mat`` — every chat, every test. The Makefile builds
without AMX (``-mno-amx-*``); this check catches a wheel built another way
(an older pip cache entry, a hand install) before anything else runs into it.

The decode runs in a child process, so a crash becomes a clear message and an
exit status instead of a dead interpreter::

    python -m shoal.engine.selfcheck      # exit 0: ok; 1: decode failed (the message says how to fix it)
"""

from __future__ import annotations

import signal
import subprocess
import sys

_CHILD = """
import llama_cpp
from shoal.engine.llama import default_model_path
llm = llama_cpp.Llama(str(default_model_path()), n_ctx=256, n_threads=1, verbose=False)
out = llm("The capital of France is", max_tokens=4, temperature=0.0)
print(repr(out["choices"][0]["text"]))
"""

FIX = (
    "rebuild llama-cpp-python without AMX: "
    "CMAKE_ARGS='-DCMAKE_C_FLAGS=\"-mno-amx-tile -mno-amx-int8 -mno-amx-bf16\" "
    "-DCMAKE_CXX_FLAGS=\"-mno-amx-tile -mno-amx-int8 -mno-amx-bf16\"' "
    ".venv/bin/pip install --no-cache-dir --force-reinstall --no-deps llama-cpp-python==0.3.36"
)


def check(timeout: float = 300.0) -> tuple[bool, str]:
    """(ok, what happened): decode four tokens of the shipped model in a child process."""
    try:
        p = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"llama.cpp did not finish a 4-token decode in {timeout:.0f} s"
    if p.returncode == 0:
        return True, f"llama.cpp decodes on this CPU: {p.stdout.strip()}"
    if p.returncode < 0:
        sig = signal.Signals(-p.returncode).name
        return False, f"llama.cpp crashed with {sig} while decoding (its AMX kernels on this CPU?); {FIX}"
    tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
    return False, f"llama.cpp failed to decode ({tail})"


def main() -> int:
    ok, what = check()
    print(("ok: " if ok else "error: ") + what, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
