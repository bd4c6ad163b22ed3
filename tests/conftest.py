"""Shared fixtures: a temporary SHOAL_HOME, the real embedded model, a real llama.cpp server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from shoal.backends.embedded import EmbeddedBackend
from shoal.config import EngineConfig, Env, Settings, parse_config
from shoal.engine.llama import default_model_path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "shoal-home"
    h.mkdir()
    monkeypatch.setenv("SHOAL_HOME", str(h))
    monkeypatch.delenv("SHOAL_CONFIG", raising=False)
    return h


@pytest.fixture(scope="session")
def model_path() -> Path:
    return default_model_path()


@pytest.fixture(scope="session")
def embedded() -> Iterator[EmbeddedBackend]:
    """One embedded engine for the session (the model loads once)."""
    backend = EmbeddedBackend("local", engine=EngineConfig(max_sequences=8, context=2048))
    asyncio.run(backend.start())
    yield backend
    asyncio.run(backend.aclose())


class LlamaServer:
    def __init__(self, model: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "llama_cpp.server",
                "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
                "--n_ctx", "2048", "--n_threads", "1", "--verbose", "false",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def tail(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-2000:]

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self.tail()}")
            try:
                if httpx.get(self.url + "/v1/models", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("llama_cpp.server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="session")
def llama_server(model_path: Path) -> Iterator[LlamaServer]:
    """A real ``python -m llama_cpp.server`` serving the same GGUF on loopback."""
    server = LlamaServer(model_path, free_port())
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


TEST_CONFIG = """
[engine]
max_sequences = 8

[[servers]]
name = "local"
kind = "embedded"

[[bots]]
name = "conversation"
role = "conversation"
instruction = "You are shoal, a friendly assistant. Answer in one or two sentences."
max_tokens = 48
history = 8

[[bots]]
name = "primary"
role = "primary"
max_tokens = 48
temperature = 0.0

[[bots]]
name = "thinker"
role = "thinker"
max_tokens = 48

[[bots]]
name = "memory"
role = "memory"
max_tokens = 96
temperature = 0.0

[routing]
always = ["memory"]
settle_timeout = 60

[[routing.rules]]
name = "about the user"
when = "personal"
send = ["thinker"]

[[routing.rules]]
name = "questions"
when = "question"
send = ["thinker"]
"""


@pytest.fixture
def test_config_text() -> str:
    return TEST_CONFIG


@pytest.fixture
def env(home: Path) -> Env:
    (home / "shoal.toml").write_text(TEST_CONFIG)
    return Env(Settings(home=home), parse_config(TEST_CONFIG))


def pytest_configure(config: pytest.Config) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_unconfigure(config: pytest.Config) -> None:
    # llama_cpp opens /dev/null twice at import and never closes it
    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        f = getattr(utils, name, None)
        if f is not None and not f.closed:
            f.close()
