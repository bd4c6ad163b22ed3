"""An Ollama-compatible API on shoal's server: /api/chat, /api/generate, /api/tags, /api/ps, /api/embed, /api/show, /api/version.

Ollama clients (Open WebUI, Home Assistant, editors, the ``ollama`` package)
reach shoal's bots with it: a "model" is a bot you may chat with, exactly as
on /v1. Streaming is NDJSON (Ollama's default is ``stream: true``). Auth is
shoal's: ``Authorization: Bearer <token>`` (``ollama.Client(host=...,
headers={...})``); a missing or wrong token is 401 in shoal's error shape,
every other error in Ollama's (``{"error": "..."}``). These paths share /api
with shoal's own routes; none of them clash (checked in tests/server/test_ollama.py).
"""

from __future__ import annotations

import json
import time
from contextlib import aclosing
from datetime import datetime, timezone
from typing import Any, AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

import shoal
from shoal.backends.base import generate
from shoal.errors import BadInput, ShoalError
from shoal.server.openai_compat import (
    ChatCompletionIn, Message, ResponseFormat, backend_for, build_request, caller, client_tool_call, cluster_of,
)
from shoal.server.openai_more import EMBEDDING_MODEL, embed, embedding_texts, rough_tokens
from shoal.server.openai_tools import SaysResult, tool_result
from shoal.server.permissions import can
from shoal.store.conversations import User

router = APIRouter(prefix="/api", tags=["ollama"])

STATUS = {"unauthorized": 401, "forbidden": 403, "not_found": 404, "bad_input": 400, "capacity": 503, "tool_call_invalid": 422,
          "context_overflow": 400, "config": 400}


def ollama_error(exc: ShoalError) -> JSONResponse:
    status = STATUS.get(exc.code, 502 if exc.code.startswith("backend") else 500)
    return JSONResponse({"error": str(exc)}, status_code=status)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _details() -> dict[str, Any]:
    return {"format": "gguf", "family": "shoal", "families": ["shoal"], "parameter_size": "", "quantization_level": ""}


def _bots(request: Request, user: User) -> list[Any]:
    return [b for b in request.app.state.swarm.config.bots if b.enabled and can(user, b, "chat")]


@router.get("/tags", summary="Ollama: the bots you may chat with, as models")
async def tags(request: Request, user: User = Depends(caller)) -> Any:
    return {"models": [
        {"name": b.name, "model": b.name, "modified_at": now_iso(), "size": 0, "digest": "", "details": _details()}
        for b in _bots(request, user)
    ]}


@router.get("/ps", summary="Ollama: models loaded now (the bots you may chat with whose server is up)")
async def ps(request: Request, user: User = Depends(caller)) -> Any:
    return {"models": [
        {"name": b.name, "model": b.name, "size": 0, "digest": "", "details": _details(), "expires_at": "0001-01-01T00:00:00Z",
         "size_vram": 0, "context_length": request.app.state.swarm.config.engine.context}
        for b in _bots(request, user)
    ]}


@router.get("/version", summary="Ollama: the server's version")
async def version(user: User = Depends(caller)) -> Any:
    return {"version": shoal.__version__}


class ShowIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(default="", max_length=200)
    name: str = Field(default="", max_length=200)


@router.post("/show", summary="Ollama: one bot as a model")
async def show(body: ShowIn, request: Request, user: User = Depends(caller)) -> Any:
    name = body.model or body.name
    bot = next((b for b in _bots(request, user) if b.name == name), None)
    if bot is None:
        return JSONResponse({"error": f"model '{name}' not found"}, status_code=404)
    return {"modelfile": "", "parameters": f"temperature {bot.temperature}\nnum_predict {bot.max_tokens}",
            "template": "", "system": bot.instruction, "details": _details(), "model_info": {}, "modified_at": now_iso(),
            "capabilities": ["completion", "tools"]}


class ChatIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(max_length=200)
    messages: list[dict[str, Any]] = Field(default_factory=list, max_length=1000)
    stream: bool = True
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=64)
    keep_alive: Any = None


class GenerateIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(max_length=200)
    prompt: str = Field(default="", max_length=200_000)
    system: str | None = None
    stream: bool = True
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    keep_alive: Any = None


def as_chat(model: str, messages: list[dict[str, Any]], fmt: Any, options: dict[str, Any], stream: bool) -> ChatCompletionIn:
    """An Ollama request as the /v1 one it means (options → sampling, format → response_format)."""
    rf = None
    if fmt == "json":
        rf = ResponseFormat(type="json_object")
    elif isinstance(fmt, dict):
        from shoal.tools.calling import choice_grammar

        choice_grammar(fmt or {"type": "object"})  # BadInput now for a schema no grammar can express, not a 502 later
        rf = ResponseFormat(type="json_schema", json_schema={"schema": fmt})
    stop = options.get("stop")
    try:
        return _chat_in(model, messages, rf, options, stop, stream)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        raise BadInput(f"{where}: {first['msg']}" if where else str(first["msg"]), hint="see Ollama's API for messages and options") from None


def _chat_in(model: str, messages: list[dict[str, Any]], rf: Any, options: dict[str, Any], stop: Any, stream: bool) -> ChatCompletionIn:
    return ChatCompletionIn(
        model=model,
        messages=[Message(**{**m, "content": m.get("content") or ""}) for m in messages] or [Message(role="user", content="")],
        stream=stream,
        max_tokens=options.get("num_predict") if isinstance(options.get("num_predict"), int) and options["num_predict"] > 0 else None,
        temperature=options.get("temperature"),
        top_p=options.get("top_p"),
        seed=options.get("seed"),
        stop=stop if isinstance(stop, (str, list)) else None,
        response_format=rf,
    )


@router.post("/chat", summary="Ollama: chat with a bot (model = bot name); NDJSON stream unless stream=false")
async def chat(body: ChatIn, request: Request, user: User = Depends(caller)) -> Any:
    swarm = request.app.state.swarm
    t0 = time.monotonic_ns()
    try:
        cc = as_chat(body.model, body.messages, body.format, body.options, body.stream)
        req, name, server = build_request(swarm, user, cc, gateway=cluster_of(request) is not None)
        backend = backend_for(request, swarm, server)
        if (said := tool_result(body.messages)) is not None:
            backend = SaysResult(backend, *said)  # the answer after a tool's result says it (docs/tools.md)
        if body.tools and body.messages and body.messages[-1].get("role") != "tool":
            choice = await client_tool_call(swarm, backend, req, body.tools, "auto", body.messages)  # Ollama has no tool_choice
            if choice is not None:
                msg = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": choice.tool, "arguments": choice.arguments}}]}
                final = _final(name, t0, choice.usage[0], choice.usage[1], "stop")
                if not body.stream:
                    return {**final, "message": msg}
                return _ndjson(_one([{"model": name, "created_at": now_iso(), "message": msg, "done": False},
                                     {**final, "message": {"role": "assistant", "content": ""}}]))
        if body.stream:
            return _ndjson(_stream(backend, req, name, t0, lambda text: {"message": {"role": "assistant", "content": text}}))
        out = await generate(backend, req)
    except ShoalError as exc:
        return ollama_error(exc)
    return {**_final(name, t0, out.prompt_tokens, out.completion_tokens, out.finish_reason),
            "message": {"role": "assistant", "content": out.text}}


@router.post("/generate", summary="Ollama: complete a prompt with a bot; NDJSON stream unless stream=false")
async def generate_route(body: GenerateIn, request: Request, user: User = Depends(caller)) -> Any:
    swarm = request.app.state.swarm
    t0 = time.monotonic_ns()
    messages = ([{"role": "system", "content": body.system}] if body.system else []) + [{"role": "user", "content": body.prompt}]
    try:
        cc = as_chat(body.model, messages, body.format, body.options, body.stream)
        req, name, server = build_request(swarm, user, cc, gateway=cluster_of(request) is not None)
        backend = backend_for(request, swarm, server)
        if not body.prompt:  # Ollama's way to load a model: an empty prompt answers at once
            return {**_final(name, t0, 0, 0, "load"), "response": ""}
        if body.stream:
            return _ndjson(_stream(backend, req, name, t0, lambda text: {"response": text}, final={"response": ""}))
        out = await generate(backend, req)
    except ShoalError as exc:
        return ollama_error(exc)
    return {**_final(name, t0, out.prompt_tokens, out.completion_tokens, out.finish_reason), "response": out.text}


class EmbedIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(default=EMBEDDING_MODEL, max_length=200)
    input: str | list[str]
    truncate: bool = True
    keep_alive: Any = None


@router.post("/embed", summary="Ollama: MiniLM-L6 embeddings (the vectors shoal's memory uses)")
async def embed_route(body: EmbedIn, request: Request, user: User = Depends(caller)) -> Any:
    t0 = time.monotonic_ns()
    try:
        texts = embedding_texts(body.input)
        vectors = await embed(request, texts)
    except ShoalError as exc:
        return ollama_error(exc)
    return {"model": body.model, "embeddings": vectors.tolist(), "total_duration": time.monotonic_ns() - t0,
            "load_duration": 0, "prompt_eval_count": rough_tokens(texts)}


def _final(model: str, t0: int, prompt: int, completion: int, reason: str) -> dict[str, Any]:
    total = time.monotonic_ns() - t0
    return {"model": model, "created_at": now_iso(), "done": True, "done_reason": reason, "total_duration": total,
            "load_duration": 0, "prompt_eval_count": prompt, "prompt_eval_duration": 0, "eval_count": completion,
            "eval_duration": total}


def _ndjson(lines: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        async for line in lines:
            yield json.dumps(line, ensure_ascii=False) + "\n"

    return StreamingResponse(body(), media_type="application/x-ndjson")


async def _one(lines: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for line in lines:
        yield line


async def _stream(backend: Any, req: Any, model: str, t0: int, piece: Any, final: dict[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
    finished = False
    try:
        async with aclosing(backend.stream(req)) as chunks:
            async for chunk in chunks:
                if chunk.text:
                    yield {"model": model, "created_at": now_iso(), **piece(chunk.text), "done": False}
                if chunk.finish_reason:
                    end = final if final is not None else {"message": {"role": "assistant", "content": ""}}
                    yield {**_final(model, t0, chunk.prompt_tokens or 0, chunk.completion_tokens or 0, chunk.finish_reason), **end}
        finished = True
    except ShoalError as exc:
        finished = True
        yield {"error": str(exc)}
    finally:
        if not finished:
            req.cancel.cancel("the client disconnected")
