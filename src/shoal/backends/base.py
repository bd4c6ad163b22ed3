"""The Backend contract (DESIGN.md §3).

A backend streams; everything else (non-streaming, routing, fallback, limits,
metrics) is built around that one method, here or in wrappers.
"""

from __future__ import annotations

from typing import AsyncIterator, ClassVar, Protocol, runtime_checkable

from shoal.errors import GenerationCancelled
from shoal.types import Chunk, Completion, GenerateRequest


@runtime_checkable
class Backend(Protocol):
    name: str
    supports_grammar: ClassVar[bool]
    supports_embeddings: ClassVar[bool]
    supports_lora: ClassVar[bool]

    def stream(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        """Yield chunks; the last one has ``finish_reason`` set.

        Raises ``GenerationCancelled`` when ``req.cancel`` is set, and a
        ``BackendError`` subclass on failure.
        """
        ...

    async def models(self) -> list[str]:
        """Model names this backend can serve right now."""
        ...

    async def aclose(self) -> None: ...


async def generate(backend: Backend, req: GenerateRequest) -> Completion:
    """Non-streaming generation, built from ``stream`` (the only place)."""
    parts: list[str] = []
    last = Chunk()
    async for chunk in backend.stream(req):
        parts.append(chunk.text)
        last = chunk
    if last.finish_reason is None:
        if req.cancel.cancelled:
            raise GenerationCancelled(req.cancel.reason or "cancelled")
        last.finish_reason = "stop"
    return Completion(
        text="".join(parts),
        finish_reason=last.finish_reason,
        prompt_tokens=last.prompt_tokens or 0,
        completion_tokens=last.completion_tokens or 0,
        served_by=last.served_by,
    )
