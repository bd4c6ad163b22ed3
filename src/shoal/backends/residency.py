"""What a server has in memory, and how to change it (the cluster's control plane).

Every backend the cluster manages implements ``ModelHost`` next to the
``Backend`` contract: ``residency()`` reports the models loaded and available
(it is also the health check), ``load``/``unload`` change them where the
server has an API for it. Servers that run one fixed model (llama.cpp
server, vLLM, the embedded engine) say so with ``fixed_model`` and never
load or unload.

``continuation`` says how a generation cut short on another server is
continued here (mid-stream failover, ``GenerateRequest.prefix``):

- ``native``: the backend renders the prompt itself and appends the prefix
  (the embedded engine): exact.
- ``completion``: the chat template is known (GGUF metadata or llama-server's
  ``/props``), so shoal renders the prompt and continues it through
  ``/v1/completions``: exact.
- ``prefill``: the server continues a trailing assistant message
  (Ollama, vLLM with ``continue_final_message``): exact when the model's
  template supports it.
- ``message``: the partial answer is sent as an assistant message and the
  server writes a new one after it: approximate (the join may not be
  seamless).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal, Protocol, runtime_checkable

Continuation = Literal["native", "completion", "prefill", "message"]


@dataclass(slots=True)
class ResidentModel:
    name: str
    size_bytes: int | None = None
    #: the server's handle for this loaded copy (LM Studio instance id)
    instance_id: str | None = None


@dataclass(slots=True)
class Residency:
    """One probe of a server: what is loaded, what could be, how busy it is."""

    loaded: dict[str, ResidentModel] = field(default_factory=dict)
    #: models the server could load, with their size when known
    available: dict[str, int | None] = field(default_factory=dict)
    #: parallel request slots the server reports (llama-server /props, LM Studio parallel)
    slots: int | None = None
    #: slots busy right now, including work from other clients (llama-server /slots)
    busy: int | None = None
    #: which server software answered, when it says (e.g. "llama-server", "llama_cpp.server")
    software: str = ""

    @property
    def used_bytes(self) -> int:
        return sum(m.size_bytes or 0 for m in self.loaded.values())


@runtime_checkable
class ModelHost(Protocol):
    #: one model for the server's lifetime: nothing to load or evict
    fixed_model: ClassVar[bool]
    #: requests in flight at once when the config does not say
    default_concurrency: ClassVar[int]

    @property
    def can_load(self) -> bool: ...

    @property
    def continuation(self) -> Continuation: ...

    async def residency(self, timeout: float) -> Residency:
        """Probe the server; raises ``BackendUnavailable`` when it does not answer."""
        ...

    async def load(self, model: str) -> None: ...

    async def unload(self, model: str) -> None: ...

    def canonical(self, model: str) -> str:
        """The server's own spelling of a model name (Ollama adds ``:latest``)."""
        ...
