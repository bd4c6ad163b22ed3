"""What crosses NATS: mesh messages, errors, and the data service's arguments and results.

Mesh messages are the pydantic models of ``runtime/messages.py`` as JSON;
the header ``Shoal-Kind`` says whether the body is an event (``e``), a
control message (``c``) or an error (``x``), and ``Shoal-Proto`` carries
``PROTOCOL_VERSION`` so a peer speaking another version is refused rather
than misread.

The data service (``runtime/dataservice.py``) sends store arguments and
results: JSON plus tags for tuples and for the few dataclasses the stores
take and return (``Memory``, ``NewMemory``, ``Fact``, ``Message``,
``Conversation``, ``User``). Nothing else is decoded into an object.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pydantic import BaseModel

from shoal import errors
from shoal.errors import BadInput, ShoalError
from shoal.runtime.messages import PROTOCOL_VERSION, Control, Event, parse_control, parse_event

KIND = "Shoal-Kind"
PROTO = "Shoal-Proto"
MSG_ID = "Nats-Msg-Id"


def encode(msg: BaseModel) -> tuple[bytes, dict[str, str]]:
    """A mesh message as (body, headers)."""
    if isinstance(msg, Event):
        return msg.json_text().encode(), {KIND: "e", PROTO: str(PROTOCOL_VERSION)}
    if isinstance(msg, Control):
        return msg.model_dump_json().encode(), {KIND: "c", PROTO: str(PROTOCOL_VERSION)}
    raise BadInput(f"{type(msg).__name__} is not a mesh message (an Event or a Control)")


def decode(body: bytes, headers: dict[str, str] | None) -> BaseModel:
    """The message of (body, headers); a remote error is raised as the ShoalError it was."""
    headers = headers or {}
    proto = headers.get(PROTO)
    if proto is not None and proto != str(PROTOCOL_VERSION):
        raise BadInput(
            f"a peer speaks mesh protocol {proto}; this one speaks {PROTOCOL_VERSION}",
            hint="run the same shoal version on the server and every worker",
        )
    kind = headers.get(KIND, "e")
    if kind == "x":
        raise error_from(json.loads(body))
    if kind == "c":
        return parse_control(body)
    return parse_event(body)


# -- errors ------------------------------------------------------------------------------
def _error_classes() -> dict[str, type[ShoalError]]:
    out: dict[str, type[ShoalError]] = {}
    for obj in vars(errors).values():
        if isinstance(obj, type) and issubclass(obj, ShoalError):
            out.setdefault(obj.code, obj)
    return out


_ERRORS = _error_classes()


def error_body(exc: BaseException) -> bytes:
    if isinstance(exc, ShoalError):
        return json.dumps({"code": exc.code, "message": exc.message, "hint": exc.hint}).encode()
    return json.dumps({"code": "error", "message": f"{type(exc).__name__}: {exc}", "hint": None}).encode()


def error_from(data: dict[str, Any]) -> ShoalError:
    cls = _ERRORS.get(str(data.get("code")), ShoalError)
    try:
        return cls(str(data.get("message", "remote error")), hint=data.get("hint"))
    except TypeError:  # a subclass with another signature
        return ShoalError(str(data.get("message", "remote error")), hint=data.get("hint"))


# -- data service values ------------------------------------------------------------------
def _dataclasses() -> dict[str, type]:
    from shoal.memory.extract import Fact
    from shoal.memory.store import Memory, NewMemory
    from shoal.store.conversations import Conversation, Message, User

    return {c.__name__: c for c in (Memory, NewMemory, Fact, Message, Conversation, User)}


_DC: dict[str, type] | None = None


def _known() -> dict[str, type]:
    global _DC
    if _DC is None:
        _DC = _dataclasses()
    return _DC


def to_wire(value: Any) -> Any:
    """JSON-able form of a store argument or result."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if name not in _known():
            raise BadInput(f"{name} cannot cross the data service")
        return {"__dc": name, "f": {f.name: to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, tuple):
        return {"__t": [to_wire(v) for v in value]}
    if isinstance(value, list):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return [to_wire(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise BadInput(f"a {type(value).__name__} cannot cross the data service")


def from_wire(value: Any) -> Any:
    if isinstance(value, list):
        return [from_wire(v) for v in value]
    if isinstance(value, dict):
        if "__dc" in value and set(value) == {"__dc", "f"}:
            cls = _known().get(value["__dc"])
            if cls is None:
                raise BadInput(f"unknown type {value['__dc']!r} from the data service")
            return cls(**{k: from_wire(v) for k, v in value["f"].items()})
        if set(value) == {"__t"}:
            return tuple(from_wire(v) for v in value["__t"])
        return {k: from_wire(v) for k, v in value.items()}
    return value


def dumps(value: Any) -> bytes:
    return json.dumps(to_wire(value), separators=(",", ":")).encode()


def loads(body: bytes) -> Any:
    return from_wire(json.loads(body))
