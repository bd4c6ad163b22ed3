"""LM Studio: models on disk, loaded and unloaded through its REST API.

LM Studio 0.4+ (https://lmstudio.ai/docs/developer/rest):

- ``GET /api/v1/models``: ``models[]`` with ``key``, ``size_bytes`` and
  ``loaded_instances[]`` (each with an ``id`` and its ``config``);
- ``POST /api/v1/models/load`` ``{"model": key}`` answers the ``instance_id``;
- ``POST /api/v1/models/unload`` ``{"instance_id": id}``.

Older servers only have the beta ``GET /api/v0/models`` (``data[]`` with
``state: loaded | not-loaded``, no sizes): shoal reads residency from it and
leaves loading to LM Studio's just-in-time loading.
"""

from __future__ import annotations

from typing import Any, ClassVar

from shoal.backends.openai_http import OpenAIHTTPBackend
from shoal.backends.residency import Residency, ResidentModel
from shoal.errors import BackendError, BackendProtocolError


class LMStudioBackend(OpenAIHTTPBackend):
    fixed_model: ClassVar[bool] = False
    default_concurrency: ClassVar[int] = 2

    def __init__(self, name: str, base_url: str, **kw: Any) -> None:
        kw.setdefault("kind", "lmstudio")
        super().__init__(name, base_url, **kw)
        #: None until probed; False when only the v0 API exists
        self._v1: bool | None = None
        self._instances: dict[str, str] = {}

    @property
    def can_load(self) -> bool:
        return self._v1 is not False

    async def residency(self, timeout: float) -> Residency:
        if self._v1 is not False:
            try:
                data = await self._get_json("/api/v1/models", timeout)
                self._v1 = True
                return self._from_v1(data)
            except BackendError as exc:
                if "HTTP 404" not in str(exc):
                    raise
                self._v1 = False
        return self._from_v0(await self._get_json("/api/v0/models", timeout))

    def _from_v1(self, data: Any) -> Residency:
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            raise BackendProtocolError(f"server '{self.name}' answered /api/v1/models without a models list")
        res = Residency(software="lmstudio")
        self._instances = {}
        for m in data["models"]:
            if not isinstance(m, dict) or m.get("type") == "embedding" or not m.get("key"):
                continue
            key, size = m["key"], m.get("size_bytes")
            size = size if isinstance(size, int) else None
            res.available[key] = size
            instances = [i for i in m.get("loaded_instances") or [] if isinstance(i, dict) and i.get("id")]
            if instances:
                self._instances[key] = instances[0]["id"]
                res.loaded[key] = ResidentModel(key, size, instance_id=instances[0]["id"])
                parallel = (instances[0].get("config") or {}).get("parallel")
                if isinstance(parallel, int) and parallel > 0:
                    res.slots = (res.slots or 0) + parallel
        return res

    def _from_v0(self, data: Any) -> Residency:
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise BackendProtocolError(f"server '{self.name}' answered /api/v0/models without a data list")
        res = Residency(software="lmstudio (v0 API)")
        for m in data["data"]:
            if not isinstance(m, dict) or m.get("type") in ("embeddings", "embedding") or not m.get("id"):
                continue
            res.available[m["id"]] = None
            if m.get("state") == "loaded":
                res.loaded[m["id"]] = ResidentModel(m["id"])
        return res

    async def load(self, model: str) -> None:
        if self._v1 is False:
            raise BackendError(f"server '{self.name}' has no load API", hint="LM Studio 0.4 or newer has one")
        out = await self._post_json("/api/v1/models/load", {"model": model})
        instance = (out or {}).get("instance_id") or (out or {}).get("model_instance_id")
        if instance:
            self._instances[model] = instance

    async def unload(self, model: str) -> None:
        if self._v1 is False:
            raise BackendError(f"server '{self.name}' has no unload API", hint="LM Studio 0.4 or newer has one")
        await self._post_json("/api/v1/models/unload", {"instance_id": self._instances.get(model, model)})
        self._instances.pop(model, None)
