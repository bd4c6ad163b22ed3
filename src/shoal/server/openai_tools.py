"""Client-side tools for /v1 and /api/chat: the client's functions, chosen by the model under a grammar.

The client sends ``tools`` (OpenAI's shape; Ollama uses the same), the model
picks one through ``tools.calling.choose`` (JSON-schema constrained, then
validated against the function's own schema, one retry, then dropped), and
the answer is a ``tool_calls`` entry the client runs itself. After the client
sends the result back (a ``tool`` message), the model answers in words.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import Counter
from typing import Any, AsyncIterator

from shoal.errors import BadInput, ShoalError
from shoal.tools.registry import Tool
from shoal.types import ChatMessage, Chunk, GenerateRequest


class ToolCallFailed(ShoalError):
    """The model could not write a valid call although the client required one (422: the request
    was well formed but could not be met; retry, or loosen tool_choice)."""

    code = "tool_call_invalid"


def client_tools(specs: list[dict[str, Any]]) -> list[Tool]:
    """The client's function specs as tools (with no function: the client runs them); BadInput when malformed."""
    import jsonschema

    tools: list[Tool] = []
    for i, spec in enumerate(specs):
        fn = spec.get("function") if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or spec.get("type", "function") != "function" or not isinstance(fn, dict):
            raise BadInput(f"tools[{i}]: expected {{\"type\": \"function\", \"function\": {{...}}}}")
        name = fn.get("name")
        if not isinstance(name, str) or not name or len(name) > 64:
            raise BadInput(f"tools[{i}].function.name: a name of 1 to 64 characters is required")
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, dict) or params.get("type", "object") != "object":
            raise BadInput(f"tools[{i}].function.parameters: must be a JSON schema of an object")
        try:
            jsonschema.Draft202012Validator.check_schema(params)
        except jsonschema.SchemaError as exc:
            raise BadInput(f"tools[{i}].function.parameters is not a valid JSON schema: {exc.message}") from exc
        if any(t.name == name for t in tools):
            raise BadInput(f"tools[{i}]: the function '{name}' is listed twice")
        tools.append(Tool(name, str(fn.get("description") or ""), params, _client_side))
    return tools


async def _client_side(arguments: dict[str, Any], ctx: Any) -> Any:  # pragma: no cover - never called
    raise BadInput("this function runs in the client")


def pick(tools: list[Tool], tool_choice: Any) -> tuple[list[Tool], bool] | None:
    """The tools offered and whether "no tool" is allowed; None: tool_choice is "none"."""
    if tool_choice in (None, "auto"):
        return tools, True
    if tool_choice == "none":
        return None
    if tool_choice == "required":
        return tools, False
    if isinstance(tool_choice, dict):
        fn = tool_choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        chosen = [t for t in tools if t.name == name]
        if not chosen:
            raise BadInput(f"tool_choice names '{name}', which is not in tools", hint="name one of the functions in tools")
        return chosen, False
    raise BadInput('tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}')


def call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def text_of(message: dict[str, Any]) -> str:
    """A message's text: a string, or the text parts of a list of parts."""
    content = message.get("content") or ""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


def as_messages(raw: list[dict[str, Any]]) -> list[ChatMessage]:
    """An OpenAI/Ollama conversation with tool turns, as plain chat messages a small model's template knows."""
    calls: list[tuple[str, str, str]] = []  # the last assistant turn's calls: id, name, arguments in words
    out: list[ChatMessage] = []
    for m in raw:
        role, content = m.get("role"), text_of(m)
        if role in ("system", "developer"):
            out.append(ChatMessage("system", content))
        elif role == "assistant":
            calls = [_call_of(c) for c in m.get("tool_calls") or [] if isinstance(c, dict)]
            if calls and not content:
                continue  # the call itself: a small model shown it would only write it again
            out.append(ChatMessage("assistant", content))
        elif role == "tool":
            # which call this answers: by id (OpenAI), by name (Ollama's tool_name), else the next one
            key = m.get("tool_call_id") or ""
            named = m.get("name") or m.get("tool_name") or ""
            i = next((i for i, c in enumerate(calls) if (key and c[0] == key) or (not key and named and c[1] == named)), 0 if calls else -1)
            _, name, args = calls.pop(i) if i >= 0 else ("", named, "")
            # the arguments too: shown "17 * 23 ... returned: 391" the model says 391; shown only "391" it redoes the sum (409)
            done = f"was called with {args} and returned" if args else "returned"
            note = f"The {name + ' ' if name else ''}tool {done}: {content}. Use this result in your answer."
            # folded into the question it answers: small models follow one user turn best
            if out and out[-1].role == "user":
                out[-1] = ChatMessage("user", f"{out[-1].content}\n\n{note}")
            else:
                out.append(ChatMessage("user", note))
        else:
            out.append(ChatMessage("user", content))
    return out


def _call_of(call: dict[str, Any]) -> tuple[str, str, str]:
    fn = call.get("function") or {}
    args = fn.get("arguments")
    if isinstance(args, str):  # OpenAI sends them as JSON text, Ollama as an object
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            pass
    words = ", ".join(f"{k}: {v}" for k, v in args.items()) if isinstance(args, dict) else str(args or "")
    return str(call.get("id") or ""), str(fn.get("name") or ""), words


def last_user_text(raw: list[dict[str, Any]]) -> str:
    """The text of the last user message (what the rules read)."""
    for m in reversed(raw):
        if m.get("role") == "user":
            return text_of(m)
    return ""


def after_tool_result(raw: list[dict[str, Any]]) -> bool:
    """The last message is a tool's result: time to answer in words (a small model would call again)."""
    return bool(raw) and raw[-1].get("role") == "tool"


def tool_result(raw: list[dict[str, Any]]) -> tuple[str, str] | None:
    """The value the last message (a tool's result) gives and the tool's name, when it is short enough to check an answer for."""
    m = raw[-1] if raw else {}
    if m.get("role") != "tool":
        return None
    value = text_of(m).strip()
    try:
        data = json.loads(value)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("result"), (int, float, str)):
        value = str(data["result"])  # {"expression": ..., "result": 391}: the answer says 391
    elif isinstance(data, (int, float)):
        value = str(data)
    if not value or len(value) > 80:
        return None
    name = m.get("name") or m.get("tool_name") or ""
    for earlier in reversed(raw[:-1]):
        calls = [_call_of(c) for c in earlier.get("tool_calls") or [] if isinstance(c, dict)] if earlier.get("role") == "assistant" else []
        if calls:
            name = name or next((c[1] for c in calls if c[0] and c[0] == m.get("tool_call_id")), calls[0][1])
            break
    return value, name


#: answers after a tool result: the model said it, said it on its retry, or the result was said plainly
ANSWERS: Counter[str] = Counter()


class SaysResult:
    """A backend whose answer after a tool result says that result.

    A 135M model shown "the calculator returned 391" for 17 * 23 sometimes
    redoes the sum in words (409) or talks past it. So the answer is checked:
    the model's when it holds the value, else one retry at another seed, else
    the result in plain words ("The calculator tool returned 391."). The
    checked answer streams as one piece.
    """

    def __init__(self, inner: Any, value: str, name: str) -> None:
        self.inner, self.value, self.name = inner, value, name

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    def stream(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        return self._stream(req)

    async def _stream(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        from shoal.backends.base import generate

        completion, out = 0, None
        for attempt in ("said", "retried"):
            if attempt == "retried":
                s = req.sampling
                req = dataclasses.replace(req, sampling=dataclasses.replace(s, temperature=max(s.temperature, 0.4), seed=(s.seed or 0) + 1))
            out = await generate(self.inner, req)
            completion += out.completion_tokens
            if self.value.lower() in out.text.lower():
                ANSWERS[attempt] += 1
                yield Chunk(text=out.text, finish_reason=out.finish_reason, prompt_tokens=out.prompt_tokens,
                            completion_tokens=completion, served_by=out.served_by)
                return
        ANSWERS["plain"] += 1
        assert out is not None
        text = f"The {self.name + ' ' if self.name else ''}tool returned {self.value}."
        yield Chunk(text=text, finish_reason="stop", prompt_tokens=out.prompt_tokens, completion_tokens=completion, served_by=out.served_by)
