"""Ollama: many models on one server, loaded and unloaded on request.

Generation goes through Ollama's OpenAI-compatible ``/v1/chat/completions``;
the control plane through its native API (https://github.com/ollama/ollama/blob/main/docs/api.md):

- ``GET /api/ps``: models in memory, with ``size`` in bytes;
- ``GET /api/tags``: models on disk, with ``size``;
- ``POST /api/generate`` with only ``model`` (and ``keep_alive``) loads a model,
  with ``keep_alive: 0`` unloads it.

Ollama continues a trailing assistant message (prefill) with templates that
support it, which is what mid-stream failover needs.
"""

from __future__ import annotations

from typing import Any, ClassVar

from shoal.backends.openai_http import OpenAIHTTPBackend
from shoal.backends.residency import Continuation, Residency, ResidentModel
from shoal.errors import BackendProtocolError


class OllamaBackend(OpenAIHTTPBackend):
    fixed_model: ClassVar[bool] = False
    default_concurrency: ClassVar[int] = 4

    def __init__(self, name: str, base_url: str, **kw: Any) -> None:
        kw.setdefault("kind", "ollama")
        super().__init__(name, base_url, **kw)
        #: how long Ollama keeps a model shoal loaded ("-1": until shoal unloads it)
        self.keep_alive: str = "-1"

    @property
    def can_load(self) -> bool:
        return True

    @property
    def continuation(self) -> Continuation:
        return "prefill"

    def canonical(self, model: str) -> str:
        return model if ":" in model else model + ":latest"

    async def residency(self, timeout: float) -> Residency:
        ps = await self._get_json("/api/ps", timeout)
        tags = await self._get_json("/api/tags", timeout)
        if not isinstance(ps, dict) or not isinstance(tags, dict):
            raise BackendProtocolError(f"server '{self.name}' answered /api/ps or /api/tags with an unexpected shape")
        loaded = {}
        for m in ps.get("models") or []:
            if isinstance(m, dict) and (name := m.get("name") or m.get("model")):
                size = m.get("size")
                loaded[name] = ResidentModel(name, size if isinstance(size, int) else None)
        available: dict[str, int | None] = {}
        for m in tags.get("models") or []:
            if isinstance(m, dict) and (name := m.get("name") or m.get("model")):
                size = m.get("size")
                available[name] = size if isinstance(size, int) else None
        for name, m in loaded.items():
            available.setdefault(name, m.size_bytes)
        return Residency(loaded=loaded, available=available, software="ollama")

    async def load(self, model: str) -> None:
        keep: Any = self.keep_alive
        try:
            keep = int(keep)
        except ValueError:
            pass
        await self._post_json("/api/generate", {"model": model, "keep_alive": keep, "stream": False})

    async def unload(self, model: str) -> None:
        await self._post_json("/api/generate", {"model": model, "keep_alive": 0, "stream": False})
