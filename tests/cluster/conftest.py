"""Cluster fixtures: real llama.cpp servers (``python -m llama_cpp.server``) on loopback ports.

Each runs the same SmolLM2 GGUF as the embedded engine, on one thread with a
small context, so three of them and the embedded engine fit two cores.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from shoal.cluster.core import Cluster
from shoal.config import ShoalConfig, parse_config
from shoal.types import Chunk, GenerateRequest

from ..conftest import LlamaServer, free_port
from .fixtures import FakeServer


class SmallLlamaServer(LlamaServer):
    """LlamaServer with n_ctx 512 (fast start, little memory); can be killed and restarted."""

    def __init__(self, model: Path, port: int) -> None:  # noqa: super().__init__ would start a 2048-ctx server
        import tempfile

        self.model = model
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.TemporaryFile()
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable, "-m", "llama_cpp.server",
                "--model", str(self.model), "--host", "127.0.0.1", "--port", str(self.port),
                "--n_ctx", "512", "--n_threads", "1", "--n_batch", "128", "--verbose", "false",
                # a request that arrives mid-stream (a health probe, a straggler of the test before) waits its
                # turn instead of cutting the running one off: these tests are about shoal, not that policy
                "--interrupt_requests", "false",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def kill(self) -> None:
        """SIGKILL: the process dies at once, mid-whatever it was doing."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.proc = self._spawn()
        self.wait_ready()


@pytest.fixture(scope="session")
def llama_pair(model_path: Path) -> Iterator[tuple[SmallLlamaServer, SmallLlamaServer]]:
    """Two real llama.cpp servers for the whole cluster suite (started together)."""
    a, b = SmallLlamaServer(model_path, free_port()), SmallLlamaServer(model_path, free_port())
    try:
        a.wait_ready()
        b.wait_ready()
        yield a, b
    finally:
        a.stop()
        b.stop()


@pytest.fixture
def spare_llama(model_path: Path) -> Iterator[SmallLlamaServer]:
    """A llama.cpp server of the test's own, free to kill."""
    s = SmallLlamaServer(model_path, free_port())
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


@pytest.fixture
def fakes() -> Iterator[list[FakeServer]]:
    """Protocol fixtures the test starts; all stopped afterwards."""
    started: list[FakeServer] = []
    yield started
    for f in started:
        f.stop()


def llama_entry(name: str, server: LlamaServer, model_path: Path, **extra: object) -> str:
    lines = [
        "[[servers]]",
        f'name = "{name}"',
        'kind = "llamacpp"',
        f'url = "{server.url}"',
        'models = ["smollm2-135m"]',
        f'model_path = "{model_path}"',
    ]
    lines += [f"{k} = {_toml(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def entry(name: str, kind: str, url: str | None = None, **extra: object) -> str:
    lines = ["[[servers]]", f'name = "{name}"', f'kind = "{kind}"']
    if url:
        lines.append(f'url = "{url}"')
    lines += [f"{k} = {_toml(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def config(*entries: str, **cluster: object) -> ShoalConfig:
    """A shoal config of these [[servers]] with [cluster] settings (health checks off unless asked)."""
    settings = {"health_interval": 0, "reload_interval": 0, **cluster}
    text = "\n".join(entries) + "\n[cluster]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in settings.items())
    return parse_config(text, "<test>")


def config_text(*entries: str, **cluster: object) -> str:
    return "\n".join(entries) + "\n[cluster]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in cluster.items())


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return str(v)


async def wait_until(predicate, timeout: float = 30, interval: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(interval)
    raise TimeoutError("condition not met in time")


async def collect(cluster: Cluster, r: GenerateRequest, prefer: str | None = None, *, timeout: float = 30) -> list[Chunk]:
    """Every chunk of one stream through the cluster (the bound only stops a hung test)."""
    async with asyncio.timeout(timeout):
        return [c async for c in cluster.stream(r, prefer=prefer)]


def started(fakes: list[FakeServer], server: FakeServer) -> FakeServer:
    fakes.append(server.start())
    return server
