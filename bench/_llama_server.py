"""llama.cpp's own ``llama-server``, built once from the llama-cpp-python sdist.

The benchmarks compare shoal's engine with llama.cpp's continuous batching.
To compare like with like, the server is built from the llama.cpp source
vendored in the *same* llama-cpp-python release that shoal runs on (the sdist
ships ``vendor/llama.cpp``), with the flags that release builds with:
Release, ``GGML_NATIVE=ON`` (``-march=native``), OpenMP, no CURL.

Only the ``llama-server`` target is built (static, so the cached binary needs
no build tree), two jobs at a time, and the binary is cached under
``.cache/llama-server/`` (gitignored) with a stamp of what it was built from;
later runs reuse it. A build takes ~10 minutes on 2 cores.

    .venv/bin/python bench/_llama_server.py            # build (or find) it
    .venv/bin/python bench/_llama_server.py --rebuild  # build it again
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import IO, Iterator

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "llama-server"
BINARY = CACHE / "bin" / "llama-server"
STAMP = CACHE / "bin" / "build.json"

#: what the cached binary must have been built with; a change rebuilds it
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",  # loopback only; no TLS library needed
    "-DBUILD_SHARED_LIBS=OFF",  # one self-contained binary to cache
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    # the web UI would be fetched from the network or built with npm: neither
    # is wanted for a benchmark; the server runs with an empty asset table
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
)


def llama_cpp_version() -> str:
    """The installed llama-cpp-python release (the server is built from the same one)."""
    return importlib.metadata.version("llama-cpp-python")


def _cpu_model() -> str:
    # GGML_NATIVE binaries only run on the CPU family they were built for
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _wanted_stamp(version: str) -> dict[str, object]:
    return {"llama_cpp_python": version, "flags": list(CMAKE_FLAGS), "cpu": _cpu_model()}


def cached_binary(version: str | None = None) -> Path | None:
    """The cached server binary if it matches this release, flags and CPU."""
    version = version or llama_cpp_version()
    if not BINARY.is_file() or not STAMP.is_file():
        return None
    try:
        stamp = json.loads(STAMP.read_text())
    except ValueError:
        return None
    want = _wanted_stamp(version)
    return BINARY if all(stamp.get(k) == v for k, v in want.items()) else None


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """Two benchmark runs must not build into the same directory at once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_binary(console: Console, *, version: str | None = None, jobs: int = 2, rebuild: bool = False) -> Path:
    """Return the path of a ``llama-server`` binary, building it if needed."""
    version = version or llama_cpp_version()
    if not rebuild and (found := cached_binary(version)):
        console.print(f"llama-server: cached build for llama-cpp-python {version} at {found}")
        return found
    with _build_lock():
        if not rebuild and (found := cached_binary(version)):  # another run built it meanwhile
            return found
        with tempfile.TemporaryDirectory(prefix="build-", dir=CACHE) as tmp:
            work = Path(tmp)
            log_path = CACHE / "build.log"
            with open(log_path, "w") as log:
                sdist = _download_sdist(console, version, work, log)
                src = _extract_llama_cpp(console, sdist, work)
                built = _cmake_build(console, src, work / "build", jobs, log, log_path)
            BINARY.parent.mkdir(parents=True, exist_ok=True)
            tmp_bin = BINARY.with_suffix(".tmp")
            shutil.copy2(built, tmp_bin)
            os.replace(tmp_bin, BINARY)
            STAMP.write_text(json.dumps(_wanted_stamp(version), indent=2) + "\n")
    console.print(f"llama-server: built {BINARY} (log: {log_path})")
    return BINARY


def _run_logged(cmd: list[str], log: IO[str], **kw: object) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n  see {log.name}")


def _download_sdist(console: Console, version: str, work: Path, log: IO[str]) -> Path:
    with console.status(f"downloading the llama-cpp-python {version} sdist (pip download) ..."):
        _run_logged(
            [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
             f"llama-cpp-python=={version}", "-d", str(work / "dl")],
            log,
        )
    found = sorted((work / "dl").glob("llama_cpp_python-*.tar.gz"))
    if not found:
        raise SystemExit(f"pip download produced no llama-cpp-python sdist; see {log.name}")
    return found[0]


def _extract_llama_cpp(console: Console, sdist: Path, work: Path) -> Path:
    """Extract only vendor/llama.cpp (the rest of the sdist is the Python binding)."""
    with console.status(f"extracting vendor/llama.cpp from {sdist.name} ..."), tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/" in m.name + "/"]
        if not members:
            raise SystemExit(f"{sdist.name} has no vendor/llama.cpp")
        tar.extractall(work / "src", members=members, filter="data")
    top = members[0].name.split("/", 1)[0]
    src = work / "src" / top / "vendor" / "llama.cpp"
    if not (src / "CMakeLists.txt").is_file():
        raise SystemExit(f"no CMakeLists.txt in {src}")
    return src


_PCT = re.compile(r"^\[\s*(\d+)%\]")  # Unix Makefiles
_NINJA = re.compile(r"^\[(\d+)/(\d+)\]")  # Ninja


def _cmake_build(console: Console, src: Path, build: Path, jobs: int, log: IO[str], log_path: Path) -> Path:
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    with console.status("configuring llama.cpp (cmake) ..."):
        _run_logged(["cmake", "-S", str(src), "-B", str(build), *gen, *CMAKE_FLAGS], log)
    cmd = ["cmake", "--build", str(build), "--target", "llama-server", "--config", "Release", "--parallel", str(jobs)]
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    tail: deque[str] = deque(maxlen=30)
    columns = (SpinnerColumn(), TextColumn("[bold]building llama-server[/]"), BarColumn(),
               TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(), TextColumn("{task.description}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("", total=100)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            tail.append(line.rstrip())
            if m := _NINJA.match(line):
                progress.update(task, completed=100 * int(m[1]) / max(1, int(m[2])))
            elif m := _PCT.match(line):
                progress.update(task, completed=int(m[1]))
            else:
                continue
            # show the file being compiled, shortened
            what = line.split("]", 1)[1].strip().rsplit("/", 1)[-1][:40]
            progress.update(task, description=what)
        rc = proc.wait()
        if rc == 0:
            progress.update(task, completed=100, description="done")
    if rc != 0:
        console.print("\n".join(tail), markup=False, highlight=False)
        raise SystemExit(f"building llama-server failed ({rc}); full log: {log_path}")
    for cand in (build / "bin" / "llama-server", build / "bin" / "Release" / "llama-server"):
        if cand.is_file():
            return cand
    raise SystemExit(f"the build succeeded but no llama-server binary was found under {build}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# resolved in the parent: the forked child must not import or allocate
_prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the benchmark dies, so no server is left behind (Linux)."""
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LlamaServer:
    """A running ``llama-server`` on a loopback port (use as a context manager)."""

    def __init__(self, binary: Path, model: Path, *, parallel: int, ctx_per_slot: int, threads: int,
                 batch: int = 512, extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        self.cmd = [
            str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(self.port),
            "-t", str(threads), "-tb", str(threads),
            "--parallel", str(parallel), "-c", str(parallel * ctx_per_slot),
            "-b", str(batch), "-ub", str(batch),
            "--no-webui", *extra,
        ]
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)

    def tail(self, n: int = 3000) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-n:]

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited ({self.proc.returncode}):\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"llama-server was not ready after {timeout:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.log.close()

    def __enter__(self) -> "LlamaServer":
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    p = argparse.ArgumentParser(description="Build (or find) the cached llama-server binary.")
    p.add_argument("--rebuild", action="store_true", help="build even if a cached binary matches")
    p.add_argument("--jobs", type=int, default=2, help="parallel build jobs (default 2)")
    p.add_argument("--version", help="llama-cpp-python release to build from (default: the installed one)")
    a = p.parse_args()
    console = Console(stderr=True)
    path = ensure_binary(console, version=a.version, rebuild=a.rebuild, jobs=a.jobs)
    print(path)


if __name__ == "__main__":
    main()
