"""An OpenAI-compatible front: /v1/models and /v1/chat/completions.

The model name is a bot's name; the bot's instruction is the system message
unless the client sends its own, and the request runs at foreground priority
through the inference cluster, preferring the bot's server. People named in
``cluster.gateway`` may also ask for a model by name (shoal as a gateway in
front of its servers). A request may prefer a server with the body field
``"server"`` or the ``X-Shoal-Server`` header. A client that disconnects
mid-stream cancels the generation upstream. Errors use OpenAI's error shape.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from contextlib import aclosing
from typing import Any, AsyncIterator, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from shoal.backends.base import Backend, generate
from shoal.cluster import Cluster, ClusterView
from shoal.errors import AuthError, CapacityError, NotFound, PermissionDenied, ShoalError
from shoal.runtime.swarm import Swarm
from shoal.server.openai_tools import SaysResult, after_tool_result, tool_result
from shoal.server.auth import authenticate
from shoal.server.permissions import allowed, can
from shoal.store.conversations import User
from shoal.types import ChatMessage, GenerateRequest, Priority, SamplingParams

router = APIRouter(prefix="/v1", tags=["openai"])


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, type_: str, code: str | None = None) -> None:
        self.status, self.message, self.type, self.code = status, message, type_, code


def openai_error(exc: OpenAIError) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": exc.message, "type": exc.type, "param": None, "code": exc.code}}, status_code=exc.status
    )


def translate(exc: ShoalError) -> OpenAIError:
    if isinstance(exc, AuthError):
        return OpenAIError(401, str(exc), "invalid_request_error", "invalid_api_key")
    if isinstance(exc, NotFound):
        return OpenAIError(404, str(exc), "invalid_request_error", "model_not_found")
    if isinstance(exc, PermissionDenied):
        return OpenAIError(403, str(exc), "invalid_request_error", "permission_denied")
    if exc.code == "tool_call_invalid":
        return OpenAIError(422, str(exc), "invalid_request_error", exc.code)
    if isinstance(exc, CapacityError):
        return OpenAIError(503, str(exc), "server_error", exc.code)
    return OpenAIError(502 if exc.code.startswith("backend") else 400, str(exc), "server_error" if exc.code.startswith("backend") else "invalid_request_error", exc.code)


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")
        return self.content or ""


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


class ChatCompletionIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(max_length=200)
    messages: list[Message] = Field(min_length=1, max_length=1000)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=8192)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    response_format: ResponseFormat | None = None
    #: the client's functions (docs/tools.md): the model answers with tool_calls it runs itself
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=64)
    tool_choice: str | dict[str, Any] | None = None
    n: int = Field(default=1, ge=1, le=8)
    stream_options: dict[str, Any] | None = None


async def caller(request: Request) -> User:
    swarm: Swarm = request.app.state.swarm
    return await authenticate(swarm.accounts, request.headers, request.cookies)


def cluster_of(request: Request) -> Cluster | None:
    return getattr(request.app.state, "cluster", None)


def may_use_gateway(swarm: Swarm, user: User) -> bool:
    principals = swarm.config.cluster.gateway
    return bool(principals) and allowed(user, principals)


@router.get("/models", summary="Bots you may chat with (and, for gateway users, the cluster's models)")
async def models(request: Request, user: User = Depends(caller)) -> Any:
    swarm: Swarm = request.app.state.swarm
    data = [
        {"id": b.name, "object": "model", "created": 0, "owned_by": "shoal", "role": b.role}
        for b in swarm.config.bots
        if b.enabled and can(user, b, "chat")
    ]
    cluster = cluster_of(request)
    if cluster is not None and may_use_gateway(swarm, user):
        bots = {d["id"] for d in data}
        data += [
            {"id": m, "object": "model", "created": 0, "owned_by": "shoal-cluster"}
            for m in await cluster.models()
            if m not in bots
        ]
    return {"object": "list", "data": data}


@router.post("/chat/completions", summary="Chat with a bot (model = bot name), streamed or not")
async def chat_completions(body: ChatCompletionIn, request: Request, user: User = Depends(caller)) -> Any:
    swarm: Swarm = request.app.state.swarm
    try:
        req, name, server = build_request(swarm, user, body, gateway=cluster_of(request) is not None)
        backend = backend_for(request, swarm, _preferred_server(request, body) or server)
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        raw = [m.model_dump(exclude_none=True) for m in body.messages]
        if (said := tool_result(raw)) is not None:
            backend = SaysResult(backend, *said)  # the answer after a tool's result says it (docs/tools.md)
        if body.tools and not after_tool_result(raw):
            answer = await client_tool_call(swarm, backend, req, body.tools, body.tool_choice, raw)
            if answer is not None:
                return tool_calls_response(answer, cid, created, name, stream=body.stream, usage=_wants_usage(body))
        if body.stream:
            reqs = [req] + [_another(req, i) for i in range(1, body.n)]
            return StreamingResponse(
                sse_many([backend.stream(r) for r in reqs], reqs, cid, created, name, usage=_wants_usage(body)),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        outs = await asyncio.gather(*(generate(backend, r) for r in [req] + [_another(req, i) for i in range(1, body.n)]))
    except ShoalError as exc:
        return openai_error(translate(exc))
    prompt = outs[0].prompt_tokens
    completion = sum(o.completion_tokens for o in outs)
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": name,
        "served_by": outs[0].served_by,
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": o.text}, "finish_reason": o.finish_reason}
            for i, o in enumerate(outs)
        ],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


def backend_for(request: Request, swarm: Swarm, prefer: str | None) -> Backend:
    cluster = cluster_of(request)
    if cluster is not None:
        return ClusterView(cluster, prefer)
    return swarm.backends[prefer or swarm.config.bots[0].server]


def _wants_usage(body: ChatCompletionIn) -> bool:
    return bool((body.stream_options or {}).get("include_usage")) or not body.stream


def _another(req: GenerateRequest, i: int) -> GenerateRequest:
    """Choice ``i`` of ``n``: its own cancellation and seed (the same seed would give the same text)."""
    s = req.sampling
    sampling = dataclasses.replace(s, seed=None if s.seed is None else s.seed + i)
    return GenerateRequest(
        messages=req.messages, model=req.model, sampling=sampling, json_schema=req.json_schema, grammar=req.grammar,
        priority=req.priority, rank=req.rank, cancel=req.cancel.child(), owner=req.owner,
    )


async def client_tool_call(
    swarm: Swarm, backend: Backend, req: GenerateRequest, specs: list[dict[str, Any]], tool_choice: Any, raw: list[dict[str, Any]]
) -> Any:
    """The call of one of the client's functions (``specs``) this request gets; None: an answer in words.

    With ``tool_choice`` "auto" the rules come first (DESIGN.md §5): a function
    alike a shoal tool whose hint matches the last user message is wanted — a
    calculator for "What is 17 * 23?" — and the tool's rule writes the call
    when it can (``tools.calling.ruled``); otherwise the model must call one of
    the wanted functions. A small model left to decide answers sums in words,
    and gets them wrong. No valid call after the retry: words, as "auto" allows.
    """
    from shoal.server.openai_tools import ToolCallFailed, client_tools, last_user_text, pick
    from shoal.tools.calling import ruled

    offered = pick(client_tools(specs), tool_choice)
    if offered is None:
        return None
    tools, allow_none = offered
    registry = getattr(swarm, "tools", None)
    if allow_none and registry is not None:
        wanted, call = ruled(tools, last_user_text(raw), registry.tools())
        if call is not None:
            return call
        if wanted:
            try:
                return await tool_choice_completion(backend, req, wanted, allow_none=False)
            except ToolCallFailed:
                return None
    return await tool_choice_completion(backend, req, tools, allow_none=allow_none)


async def tool_choice_completion(backend: Backend, req: GenerateRequest, tools: list[Any], *, allow_none: bool) -> Any:
    """The model's call of one of ``tools`` (None: it chose to answer in words); ToolCallFailed when it must call but cannot."""
    from shoal.server.openai_tools import ToolCallFailed
    from shoal.tools.calling import choose

    choice = await choose(
        backend, tools, req.messages, model=req.model, allow_none=allow_none, priority=req.priority,
        owner=req.owner, seed=req.sampling.seed,
    )
    if choice is None:
        if allow_none:
            return None
        raise ToolCallFailed("the model did not produce a valid call of the required tool", hint="retry, or set tool_choice to auto")
    return choice if choice.tool is not None else None


def tool_calls_response(choice: Any, cid: str, created: int, model: str, *, stream: bool, usage: bool) -> Any:
    from shoal.server.openai_tools import call_id

    arguments = json.dumps(choice.arguments, ensure_ascii=False)
    call = {"id": call_id(), "type": "function", "function": {"name": choice.tool, "arguments": arguments}}
    counts = {"prompt_tokens": choice.usage[0], "completion_tokens": choice.usage[1], "total_tokens": sum(choice.usage)}
    if not stream:
        return {
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                         "finish_reason": "tool_calls"}],
            "usage": counts,
        }

    def frame(delta: dict[str, Any], finish: str | None) -> str:
        payload = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    async def frames() -> AsyncIterator[str]:
        # the call was validated whole before the first byte; it is streamed the way OpenAI streams one
        yield frame({"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": call["id"], "type": "function", "function": {"name": choice.tool, "arguments": ""}}]}, None)
        for i in range(0, len(arguments), 16):
            yield frame({"tool_calls": [{"index": 0, "function": {"arguments": arguments[i:i + 16]}}]}, None)
        yield frame({}, "tool_calls")
        if usage:
            tail = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": counts}
            yield f"data: {json.dumps(tail)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(frames(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _preferred_server(request: Request, body: ChatCompletionIn) -> str | None:
    extra = body.model_extra or {}
    value = extra.get("server") or request.headers.get("x-shoal-server")
    return value if isinstance(value, str) and value else None


def build_request(
    swarm: Swarm, user: User, body: ChatCompletionIn, *, gateway: bool = False
) -> tuple[GenerateRequest, str, str | None]:
    """The request, the model name to answer with, and the bot's server (None for a raw model)."""
    bot = next((b for b in swarm.config.bots if b.name == body.model), None)
    if bot is None and gateway and may_use_gateway(swarm, user):
        return _raw_request(user, body), body.model, None
    if bot is None:
        raise NotFound(f"the model '{body.model}' does not exist", hint="GET /v1/models lists the bots you may use")
    if not bot.enabled or not can(user, bot, "chat"):
        # indistinguishable from a missing model for someone who may not use it
        raise NotFound(f"the model '{body.model}' does not exist", hint="GET /v1/models lists the bots you may use")
    req = _raw_request(user, body, instruction=bot.instruction, temperature=bot.temperature, max_tokens=bot.max_tokens)
    req.model = bot.model
    req.rank = bot.rank
    return req, bot.name, bot.server


def _raw_request(
    user: User, body: ChatCompletionIn, *, instruction: str = "", temperature: float = 0.7, max_tokens: int = 256
) -> GenerateRequest:
    from shoal.server.openai_tools import as_messages

    messages = []
    if not any(m.role in ("system", "developer") for m in body.messages) and instruction:
        messages.append(ChatMessage("system", instruction))
    messages += as_messages([m.model_dump(exclude_none=True) for m in body.messages])
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    schema = None
    if body.response_format and body.response_format.type == "json_schema":
        js = body.response_format.json_schema or {}
        schema = js.get("schema", js) or {"type": "object"}
    elif body.response_format and body.response_format.type == "json_object":
        schema = body.response_format.schema_ or {"type": "object"}
    return GenerateRequest(
        messages=messages,
        model=body.model,
        sampling=SamplingParams(
            max_tokens=body.max_completion_tokens or body.max_tokens or max_tokens,
            temperature=temperature if body.temperature is None else body.temperature,
            top_p=body.top_p or 0.95,
            seed=body.seed,
            stop=stop,
        ),
        json_schema=schema,
        priority=Priority.FOREGROUND,
        owner=f"v1:{user.name}",
    )


async def sse(chunks: AsyncIterator[Any], req: GenerateRequest, cid: str, created: int, model: str) -> AsyncIterator[str]:
    def frame(delta: dict[str, Any], finish: str | None, served_by: str | None = None) -> str:
        payload: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if served_by:
            payload["served_by"] = served_by
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    finished = False
    try:
        yield frame({"role": "assistant", "content": ""}, None)
        async with aclosing(chunks) as stream:  # type: ignore[type-var]
            async for chunk in stream:
                if chunk.text:
                    yield frame({"content": chunk.text}, None)
                if chunk.finish_reason:
                    yield frame({}, chunk.finish_reason, chunk.served_by)
        finished = True
        yield "data: [DONE]\n\n"
    except ShoalError as exc:
        err = translate(exc)
        yield f"data: {json.dumps({'error': {'message': err.message, 'type': err.type, 'code': err.code}})}\n\n"
        finished = True
    finally:
        if not finished:
            # the client went away: stop the backend's work now
            req.cancel.cancel("the client disconnected")


async def sse_many(
    streams: list[AsyncIterator[Any]], reqs: list[GenerateRequest], cid: str, created: int, model: str, *, usage: bool = False
) -> AsyncIterator[str]:
    """``n`` streamed choices, interleaved as they arrive (one choice: exactly ``sse``), then usage when asked."""
    if len(streams) == 1 and not usage:
        async for frame in sse(streams[0], reqs[0], cid, created, model):
            yield frame
        return
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue(maxsize=256)
    counts = [0, 0]

    async def pump(i: int, chunks: AsyncIterator[Any]) -> None:
        try:
            async with aclosing(chunks) as stream:  # type: ignore[type-var]
                async for chunk in stream:
                    await queue.put((i, chunk))
            await queue.put((i, None))
        except ShoalError as exc:
            await queue.put((i, exc))

    def frame(i: int, delta: dict[str, Any], finish: str | None) -> str:
        payload = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": i, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    open_ = len(tasks)
    try:
        for i in range(len(streams)):
            yield frame(i, {"role": "assistant", "content": ""}, None)
        while open_:
            i, item = await queue.get()
            if item is None:
                open_ -= 1
            elif isinstance(item, ShoalError):
                err = translate(item)
                yield f"data: {json.dumps({'error': {'message': err.message, 'type': err.type, 'code': err.code}})}\n\n"
                return
            else:
                if item.text:
                    yield frame(i, {"content": item.text}, None)
                if item.finish_reason:
                    counts[0] = max(counts[0], item.prompt_tokens or 0)
                    counts[1] += item.completion_tokens or 0
                    yield frame(i, {}, item.finish_reason)
        if usage:
            tail = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
                    "usage": {"prompt_tokens": counts[0], "completion_tokens": counts[1], "total_tokens": sum(counts)}}
            yield f"data: {json.dumps(tail)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        for r in reqs:
            if open_:
                r.cancel.cancel("the client disconnected")
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
