"""``shoal up``, ``shoal users`` and ``shoal tokens`` as real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .test_chat import shoal


def test_users_and_tokens_are_managed_from_the_cli(home: Path) -> None:
    assert shoal(home, "users", "add", "ana", "--admin", "--password-stdin", input="ana-password-1\n").returncode == 0
    out = shoal(home, "users", "add", "ana", "--password-stdin", input="another-password\n")
    assert out.returncode == 2 and "already exists" in out.stderr
    short = shoal(home, "users", "add", "bob", "--password-stdin", input="short\n")
    assert short.returncode == 2 and "too short" in short.stderr
    listing = shoal(home, "users", "list").stdout
    assert "ana" in listing and "admin" in listing
    token = shoal(home, "tokens", "create", "--user", "ana", "--name", "ci").stdout.strip()
    assert token.startswith("shoal_") and len(token) > 30
    tokens = shoal(home, "tokens", "list").stdout
    assert "ci" in tokens and "active" in tokens
    tid = re.search(r"(01[0-9A-Z]{24})", tokens).group(1)  # type: ignore[union-attr]
    assert shoal(home, "tokens", "revoke", tid).returncode == 0
    assert "revoked" in shoal(home, "tokens", "list").stdout
    assert shoal(home, "tokens", "revoke", tid).returncode == 1
    assert shoal(home, "tokens", "create", "--user", "nobody").returncode == 1
    assert shoal(home, "users", "remove", "ana", "--yes").returncode == 0
    assert "ana" not in shoal(home, "users", "list").stdout


def test_up_creates_the_first_admin_prints_the_url_and_serves(home: Path) -> None:
    env = {**os.environ, "SHOAL_HOME": str(home), "COLUMNS": "200"}
    with subprocess.Popen(
        [sys.executable, "-m", "shoal", "up", "--port", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        first_run(proc)
    # a second start does not create another admin or print a password
    with subprocess.Popen(
        [sys.executable, "-m", "shoal", "up", "--port", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            text = ""
            while "Ctrl-C" not in text:
                line = proc.stdout.readline()
                if not line:
                    break
                text += line
            assert "password" not in text and "is up at" in text
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


def first_run(proc: subprocess.Popen[str]) -> None:
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "password:" in line:
                break
        text = "".join(lines)
        url = re.search(r"http://localhost:(\d+)/", text)
        password = re.search(r"password:\s+(\S+)", text)
        assert url and password, text
        base = f"http://127.0.0.1:{url.group(1)}"
        with httpx.Client(base_url=base) as c:
            assert c.get("/healthz").json()["status"] == "ok"
            r = c.post("/api/auth/login", json={"name": "admin", "password": password.group(1)})
            assert r.status_code == 200 and r.json()["user"]["admin"] is True
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
