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
        prefer = _preferred_server(request, body) or server
        cluster = cluster_of(request)
        backend: Backend
        if cluster is not None:
            backend = ClusterView(cluster, prefer)
        else:
            backend = swarm.backends[prefer or swarm.config.bots[0].server]
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        if body.stream:
            return StreamingResponse(
                sse(backend.stream(req), req, cid, created, name),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        out = await generate(backend, req)
    except ShoalError as exc:
        return openai_error(translate(exc))
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": name,
        "served_by": out.served_by,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": out.text}, "finish_reason": out.finish_reason}
        ],
        "usage": {
            "prompt_tokens": out.prompt_tokens,
            "completion_tokens": out.completion_tokens,
            "total_tokens": out.prompt_tokens + out.completion_tokens,
        },
    }


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
    messages = []
    if not any(m.role in ("system", "developer") for m in body.messages) and instruction:
        messages.append(ChatMessage("system", instruction))
    for m in body.messages:
        role = "system" if m.role in ("system", "developer") else ("assistant" if m.role == "assistant" else "user")
        messages.append(ChatMessage(role, m.text()))  # type: ignore[arg-type]
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
