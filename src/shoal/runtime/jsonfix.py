"""Read a small model's grammar-constrained JSON, also when it ran out of tokens.

Under a JSON-schema grammar the model can only write valid JSON, but it can
stop early: ``max_tokens`` ends it inside the last string (the grammar emits
keys in schema order, so that is nearly always the long free-text field).
Such an answer is closed here — the open string ended at its last whole word,
the open objects and arrays closed — instead of being thrown away.
"""

from __future__ import annotations

import json
from typing import Any


def close_truncated(text: str) -> str | None:
    """``text`` with its open string, arrays and objects closed; None when no value can be made of it."""
    stack: list[str] = []
    in_string = escape = False
    start = 0  # where the open string's content starts
    for i, ch in enumerate(text):
        if in_string:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string, start = True, i + 1
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if not stack:
                return None
            stack.pop()
    out = text
    if in_string:
        if escape:
            out = out[:-1]
        body = out[start:]
        cut = body.rstrip().rfind(" ")
        if cut > 0:  # end on the last whole word
            out = out[: start + cut]
        out = out.rstrip() + '"'
        # a string cut inside an object key (no ':' after it yet) cannot be closed into a value
        if stack and stack[-1] == "}" and _is_key(text, start):
            return None
    out = out.rstrip()
    if out.endswith(","):
        out = out[:-1]
    if out.endswith(":"):
        return None
    return out + "".join(reversed(stack))


def _is_key(text: str, start: int) -> bool:
    """Whether the string opening at ``start`` is an object key (preceded by '{' or ',')."""
    before = text[: start - 1].rstrip()
    return before.endswith(("{", ","))


def loads_constrained(text: str, finish_reason: str | None = None) -> Any:
    """``json.loads`` of a constrained answer; a cut-off one ("length") is closed first.

    Raw control characters inside strings (a newline in a note) are accepted.
    Raises ``ValueError`` when it is not JSON and cannot be made so.
    """
    try:
        return json.loads(text, strict=False)
    except ValueError:
        if finish_reason != "length":
            raise
    closed = close_truncated(text.strip())
    if closed is None:
        raise ValueError("the answer ended before it could be read as JSON")
    return json.loads(closed, strict=False)
