"""Hot reload: notice when shoal.toml changes and hand the new config to the cluster.

Polls the file's content hash (no inotify: it works the same on every OS and
on network file systems, and a file rewritten within one mtime tick is still
noticed). A file that does not parse is
reported (file, line, field) and ignored: the cluster keeps running on the
last good config.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from shoal.config import ShoalConfig, load_config
from shoal.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class ReloadState:
    path: Path | None
    signature: str | None = None
    reloads: int = 0
    last_reload: float | None = None  # wall clock
    error: str | None = None
    #: what the last reload changed, one line each
    applied: list[str] = field(default_factory=list)
    #: changes that only take effect after a restart (said, never silently ignored)
    restart_needed: list[str] = field(default_factory=list)


#: applying a config may report what it changed and what needs a restart
Applied = tuple[list[str], list[str]] | None


class ConfigWatcher:
    def __init__(self, path: Path, apply: Callable[[ShoalConfig], "Applied | Awaitable[Applied]"]) -> None:
        self.state = ReloadState(path=path, signature=_signature(path))
        self._apply = apply

    async def check(self) -> bool:
        """Reload when the file changed; True when a new config was applied."""
        path = self.state.path
        assert path is not None
        sig = _signature(path)
        if sig is None or sig == self.state.signature:
            return False  # unchanged, or missing (keep what runs)
        self.state.signature = sig
        try:
            config = load_config(path)
        except ConfigError as exc:
            self.state.error = str(exc)
            log.warning("shoal.toml changed but cannot be used; the cluster keeps its servers: %s", exc)
            return False
        result: Any = self._apply(config)
        if inspect.isawaitable(result):
            result = await result
        applied, restart = result if result else ([], [])
        self.state.applied, self.state.restart_needed = applied, restart
        self.state.error = None
        self.state.reloads += 1
        self.state.last_reload = time.time()
        log.info("reloaded %s: %s", path, "; ".join(applied) or "no running part changed")
        for r in restart:
            log.warning("shoal.toml: %s", r)
        return True


def _signature(path: Path) -> str | None:
    try:
        return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    except OSError:
        return None
