"""Real servers the tests start and stop: a nats-server with JetStream on a free loopback port.

One implementation for every test package (tests/edge, tests/mesh): a config file in a temp
dir, the JetStream store beside it, the log beside that. ``stop()`` then ``start()`` runs the
same server again on the same port with the same store (a network cut, or a restart).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import free_port

NATS = shutil.which("nats-server") or "/usr/sbin/nats-server"


def wait_port(port: int, timeout: float = 15.0) -> None:
    """Return once something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class NatsServer:
    """``nats-server -c <base>/nats.conf``: JetStream stored in ``<base>/js``, on a free port, plus ``config``
    (an ``authorization``, ``tls`` or ``operator`` block). Its output goes to ``<base>/nats.log``."""

    def __init__(self, base: Path, config: str = "") -> None:
        if not Path(NATS).exists():
            pytest.skip("nats-server is not installed (make test installs Debian's nats-server)")
        base.mkdir(parents=True, exist_ok=True)
        self.base = base
        self.store = base / "js"
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.conf = base / "nats.conf"
        self.conf.write_text(f'listen: "127.0.0.1:{self.port}"\njetstream {{ store_dir: "{self.store}" }}\n{config}\n')
        self.log = base / "nats.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "NatsServer":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([NATS, "-c", str(self.conf)], stdout=log, stderr=log)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop(hard=True)
            raise TimeoutError(f"nats-server did not listen on {self.port}: {self.output()[-2000:]}") from None
        return self

    def stop(self, *, hard: bool = False) -> None:
        """SIGTERM (or SIGKILL with ``hard``) and wait: the port is free and the store closed after it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            self.proc.wait(timeout=15)
        self.proc = None

    def output(self) -> str:
        return self.log.read_text("utf-8", "replace") if self.log.exists() else ""
