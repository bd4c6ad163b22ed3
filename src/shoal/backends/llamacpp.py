"""A llama.cpp HTTP server: ``llama-server`` (C++) or ``python -m llama_cpp.server``.

Both serve one model for their lifetime, so there is nothing to load or evict.
``llama-server`` describes itself at ``/props`` (model, slots, chat template)
and its slots at ``/slots``; ``llama_cpp.server`` only lists ``/v1/models``.
``llama_cpp.server`` serves one request at a time (a new one interrupts or
waits), so the default admission limit is one; ``llama-server`` has as many
as its ``--parallel`` slots.

Exact mid-stream continuation needs the model's chat template: from
``/props`` or, for a server on this machine, from the GGUF file named by
``model_path`` in shoal.toml.
"""

from __future__ import annotations

from typing import Any, ClassVar

from shoal.backends.gguf import ChatInfo, chat_info
from shoal.backends.openai_http import OpenAIHTTPBackend
from shoal.backends.residency import Continuation, Residency, ResidentModel
from shoal.config import ServerConfig
from shoal.engine import chat
from shoal.errors import BackendError, ModelError
from shoal.types import GenerateRequest


class LlamaCppBackend(OpenAIHTTPBackend):
    fixed_model: ClassVar[bool] = True
    default_concurrency: ClassVar[int] = 1

    def __init__(self, name: str, base_url: str, *, model_path: str | None = None, **kw: Any) -> None:
        kw.setdefault("kind", "llamacpp")
        super().__init__(name, base_url, **kw)
        self.model_path = model_path
        self._chat: ChatInfo | None = None
        self._chat_error: str | None = None
        if model_path:
            try:
                self._chat = chat_info(str(model_path))
            except ModelError as exc:
                # the server still works; failover falls back to an approximate join
                self._chat_error = str(exc)

    @classmethod
    def options(cls, server: ServerConfig) -> dict[str, Any]:
        return {"model_path": server.model_path or None}

    @property
    def continuation(self) -> Continuation:
        return "completion" if self._chat is not None else "message"

    def completion_prompt(self, req: GenerateRequest) -> str | None:
        if self._chat is None:
            return None
        info = self._chat
        prompt = chat.render(
            info.template,
            req.messages,
            # the server's tokenizer adds BOS itself when the model asks for it
            bos_token="" if info.add_bos else info.bos_token,
            eos_token=info.eos_token,
        )
        return prompt + req.prefix

    async def residency(self, timeout: float) -> Residency:
        try:
            props = await self._get_json("/props", timeout)
        except BackendError as exc:
            if "HTTP 404" not in str(exc) and "HTTP 405" not in str(exc):
                raise
            props = None
        if isinstance(props, dict) and "default_generation_settings" in props:
            return await self._llama_server(props, timeout)
        models = await super().residency(timeout)
        models.software = "llama_cpp.server"
        return models

    async def _llama_server(self, props: dict[str, Any], timeout: float) -> Residency:
        if self._chat is None and props.get("chat_template"):
            self._chat = ChatInfo(
                template=props["chat_template"],
                bos_token=props.get("bos_token", "") or "",
                eos_token=props.get("eos_token", "") or "",
                # llama-server renders with BOS text and does not add another
                add_bos=False,
            )
        res = await super().residency(timeout)
        res.software = "llama-server"
        slots = props.get("total_slots")
        res.slots = int(slots) if isinstance(slots, int) and slots > 0 else None
        if not res.loaded and props.get("model_path"):
            name = str(props["model_path"])
            res.loaded = {name: ResidentModel(name)}
            res.available = {name: None}
        try:
            state = await self._get_json("/slots", timeout)
        except BackendError:
            return res  # /slots is off unless the server runs with --slots
        if isinstance(state, list):
            res.busy = sum(1 for s in state if isinstance(s, dict) and (s.get("is_processing") or s.get("state") == 1))
        return res
