"""What the benches that run real processes share: free loopback ports, the stub model, nats-server, stopping.

The stub is bench/upstream.py, an OpenAI-compatible server that streams canned
tokens without inference, so a bench on it measures shoal, not a model.
Import it as ``from _stack import ...``: a bench run as a script has bench/ on
its path.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import httpx

ROOT = Path(__file__).resolve().parents[1]
NATS = shutil.which("nats-server") or "/usr/sbin/nats-server"

STUB_SERVER = """
[[servers]]
name = "stub"
kind = "openai"
url = "http://127.0.0.1:{upstream}"
models = ["bench"]
{extra}"""


def stub_swarm(upstream: int, routing: str = "", server: str = "") -> str:
    """Config for the four core bots on the stub at port ``upstream``, every turn sent to the thinker.

    ``routing`` is more lines for the ``[routing]`` table, ``server`` for the stub's
    ``[[servers]]`` entry; append other tables after the result.
    """
    return STUB_SERVER.format(upstream=upstream, extra=server) + f"""
[[bots]]
name = "conversation"
role = "conversation"
server = "stub"

[[bots]]
name = "primary"
role = "primary"
server = "stub"

[[bots]]
name = "thinker"
role = "thinker"
server = "stub"

[[bots]]
name = "memory"
role = "memory"
server = "stub"

[routing]
always = ["memory"]
{routing}
[[routing.rules]]
name = "everything"
when = "always"
send = ["thinker"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20) -> None:
    """Return once something accepts connections on loopback ``port``; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


def child_env(home: Path) -> dict[str, str]:
    """The environment for a ``python -m shoal`` child on ``home``: this checkout's sources, no SHOAL_* of ours, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    env.update(SHOAL_HOME=str(home), PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1")
    return env


def start_upstream(port: int, tokens: int, timeout: float = 30) -> subprocess.Popen[bytes]:
    """bench/upstream.py on ``port``, streaming ``tokens`` tokens a reply, once it answers /v1/models."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "upstream.py"), "--port", str(port), "--tokens", str(tokens)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise SystemExit("the upstream stub (bench/upstream.py) did not start")


def start_nats(store: Path, port: int, timeout: float = 20, *, monitor: int = 0) -> subprocess.Popen[bytes]:
    """nats-server with JetStream storing in ``store``, on loopback ``port``, once it listens.

    ``monitor``: also serve the monitoring endpoint (``/varz`` counts every message) on that port.
    """
    extra = ["-m", str(monitor)] if monitor else []
    proc = subprocess.Popen([NATS, "-js", "-sd", str(store), "-p", str(port), "-a", "127.0.0.1", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout)
    except TimeoutError:
        stop([proc])
        raise
    return proc


def stop(procs: Sequence[subprocess.Popen[Any]], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Send ``sig`` to every process still running, then wait for each; kill one that is not gone in ``timeout`` s."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
