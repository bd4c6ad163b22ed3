"""Value types shared by backends, the engine, the cluster and the bots."""

from __future__ import annotations

import enum
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]


class Priority(enum.IntEnum):
    """Who waits for whom. Lower value = more urgent.

    The embedded engine and the cluster queue both order work by this;
    foreground is the person waiting for a reply.
    """

    FOREGROUND = 0
    PRIMARY = 1
    MEMORY = 2
    THINKING = 3

    @classmethod
    def parse(cls, value: "str | int | Priority") -> "Priority":
        if isinstance(value, Priority):
            return value
        if isinstance(value, int):
            return cls(value)
        return cls[value.upper()]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(slots=True)
class SamplingParams:
    """Sampling knobs every backend understands (others ignore what they lack)."""

    max_tokens: int = 256
    #: end-of-generation is suppressed until this many tokens (llama.cpp's ignore_eos, bounded)
    min_tokens: int = 0
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    #: OpenAI-style penalties on tokens already generated (0: off)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    #: DRY ("don't repeat yourself") penalty on repeated sequences (0: off); see llama.cpp's sampler
    dry_multiplier: float = 0.0
    dry_base: float = 1.75
    dry_allowed_length: int = 2
    dry_last_n: int = -1
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


class CancelToken:
    """A cancellation flag safe to check from any thread.

    The embedded engine checks it between tokens; HTTP backends close the
    upstream connection when it is set, which cancels the server's work. A
    ``child`` is cancelled with its parent, and can be cancelled alone (one
    attempt at a reply stopped, the reply itself not).
    """

    __slots__ = ("_event", "_reason", "_parent")

    def __init__(self, parent: "CancelToken | None" = None) -> None:
        self._event = threading.Event()
        self._reason: str | None = None
        self._parent = parent

    def child(self) -> "CancelToken":
        return CancelToken(self)

    def cancel(self, reason: str = "cancelled") -> None:
        if not self._event.is_set():
            self._reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set() or (self._parent is not None and self._parent.cancelled)

    @property
    def reason(self) -> str | None:
        if self._event.is_set():
            return self._reason
        return self._parent.reason if self._parent is not None else None


@dataclass(slots=True)
class GenerateRequest:
    messages: list[ChatMessage]
    model: str | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    #: a JSON schema the output must follow (compiled to a grammar)
    json_schema: dict[str, Any] | None = None
    #: a raw GBNF grammar (takes precedence over json_schema)
    grammar: str | None = None
    priority: Priority = Priority.FOREGROUND
    #: within one priority class, higher rank is scheduled first
    rank: int = 0
    cancel: CancelToken = field(default_factory=CancelToken)
    #: who asked (bot name), for metrics and logs
    owner: str = ""
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    #: text the assistant has already produced; generation continues after it
    #: (used by mid-stream failover). Not repeated in the output.
    prefix: str = ""
    #: a GGUF LoRA adapter file to generate with ("" = the base model); the embedded
    #: engine batches only sequences with the same adapter (docs/learn.md)
    adapter: str = ""


FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(slots=True)
class Chunk:
    """One piece of a streamed generation.

    ``text`` is the new text; the last chunk carries ``finish_reason`` and
    token counts.
    """

    text: str = ""
    finish_reason: FinishReason | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    #: which backend/server produced the chunk (set by wrappers)
    served_by: str | None = None
    #: how many generated tokens ``text`` holds (an HTTP backend merges those that arrived together)
    tokens: int = 1


@dataclass(slots=True)
class Completion:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int = 0
    completion_tokens: int = 0
    served_by: str | None = None
