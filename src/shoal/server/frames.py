"""Websocket frames (protocol version 1). See docs/protocol.md.

Client → server frames are validated here; server → client frames are
either journal events (``type: "event"``, carrying conversation, bot, kind
and seq) or the replies below.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

VERSION = 1


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")
    v: int = VERSION
    #: echoed in the reply so a client can match it
    id: str | None = Field(default=None, max_length=64)


class Subscribe(_Frame):
    type: Literal["subscribe"]
    conversation: str = Field(max_length=64)
    #: the last seq the client has; everything after it is replayed from the store
    after: int = Field(default=0, ge=0)


class Unsubscribe(_Frame):
    type: Literal["unsubscribe"]
    conversation: str = Field(max_length=64)


class Send(_Frame):
    type: Literal["send"]
    conversation: str = Field(max_length=64)
    text: str


class Stop(_Frame):
    type: Literal["stop"]
    conversation: str = Field(max_length=64)


class Thinking(_Frame):
    """"What are you thinking about?" — answered from the thinkers' live buffers."""

    type: Literal["thinking"]
    conversation: str = Field(max_length=64)


class CancelThought(_Frame):
    type: Literal["cancel_thought"]
    conversation: str = Field(max_length=64)
    thought_id: str | None = Field(default=None, max_length=64)


class Ping(_Frame):
    type: Literal["ping"]


ClientFrame = Annotated[
    Union[Subscribe, Unsubscribe, Send, Stop, Thinking, CancelThought, Ping], Field(discriminator="type")
]
CLIENT = TypeAdapter(ClientFrame)


def error_frame(code: str, message: str, *, hint: str | None = None, ref: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"v": VERSION, "type": "error", "code": code, "message": message, "hint": hint, "id": ref, **extra}
