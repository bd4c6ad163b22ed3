"""vLLM's OpenAI-compatible server: one model (``--model``), many requests at once.

``GET /v1/models`` names the model (``id``, ``max_model_len``); there is no
load or unload. A partial answer is continued exactly with vLLM's
``continue_final_message`` / ``add_generation_prompt`` chat options.
"""

from __future__ import annotations

from typing import Any, ClassVar

from shoal.backends.openai_http import OpenAIHTTPBackend
from shoal.backends.residency import Continuation, Residency


class VLLMBackend(OpenAIHTTPBackend):
    fixed_model: ClassVar[bool] = True
    default_concurrency: ClassVar[int] = 32

    def __init__(self, name: str, base_url: str, **kw: Any) -> None:
        kw.setdefault("kind", "vllm")
        super().__init__(name, base_url, **kw)

    @property
    def continuation(self) -> Continuation:
        return "prefill"

    def prefill_flags(self) -> dict[str, Any]:
        return {"continue_final_message": True, "add_generation_prompt": False}

    async def residency(self, timeout: float) -> Residency:
        res = await super().residency(timeout)
        res.software = "vllm"
        return res
