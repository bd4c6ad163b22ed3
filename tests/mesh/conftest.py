"""Mesh fixtures: a real nats-server (JetStream, temp store, free loopback port), optionally with
authorization, and `shoal worker` as a real subprocess with its own SHOAL_HOME (no database)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from shoal.config import Env, Settings, parse_config

from .._servers import NatsServer
from ..conftest import ROOT, TEST_CONFIG
from ..edge.conftest import wait_for

__all__ = ["NatsServer", "WorkerProcess", "mesh_toml", "wait_for"]


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


#: the test swarm, faster (facts by rules only, shorter thoughts) and patient (a loaded machine is slow)
MESH_CONFIG = TEST_CONFIG.replace("settle_timeout = 60", "settle_timeout = 240").replace(
    # two processes each decode with one thread: two 2-thread llama.cpp contexts on 2 cores collapse (DESIGN §4)
    "[engine]\nmax_sequences = 8\n", "[engine]\nmax_sequences = 8\nthreads = 1\n"
).replace(
    'name = "thinker"\nrole = "thinker"\nmax_tokens = 48', 'name = "thinker"\nrole = "thinker"\nmax_tokens = 16'
).replace("Answer in one or two sentences.\"\nmax_tokens = 48", "Answer in one or two sentences.\"\nmax_tokens = 24") + """
[memory]
extract_with_model = false
"""


def mesh_toml(url: str, *, remote: str = '["thinker", "memory"]', extra: str = "") -> str:
    return MESH_CONFIG + f"""
[mesh]
kind = "nats"
url = "{url}"
remote = {remote}
heartbeat = 0.5
missed = 10
{extra}
"""


def mesh_env(home: Path, toml: str) -> Env:
    home.mkdir(parents=True, exist_ok=True)
    (home / "shoal.toml").write_text(toml)
    return Env(Settings(home=home), parse_config(toml))


#: a worker's own shoal.toml: its model decodes with one thread (the server's has the other core)
WORKER_TOML = "[engine]\nthreads = 1\n"


class WorkerProcess:
    """``python -m shoal worker --bots ... --nats URL`` in its own SHOAL_HOME (which never gets a database)."""

    def __init__(self, home: Path, url: str, bots: str = "thinker,memory", toml: str = WORKER_TOML) -> None:
        self.home = home
        self.url = url
        self.bots = bots
        home.mkdir(parents=True, exist_ok=True)
        if toml:
            (home / "shoal.toml").write_text(toml)
        self.log = home.parent / f"{home.name}.log"  # beside its home: the home must hold no file but its config
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "WorkerProcess":
        env = dict(os.environ, SHOAL_HOME=str(self.home), PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1")
        env.pop("SHOAL_CONFIG", None)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "shoal", "worker", "--bots", self.bots, "--nats", self.url],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        return self

    def output(self) -> str:
        return self.log.read_text("utf-8", "replace") if self.log.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=15)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)
