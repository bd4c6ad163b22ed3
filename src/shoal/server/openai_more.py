"""/v1/embeddings and /v1/completions, for clients that expect the rest of OpenAI's surface.

Embeddings are MiniLM-L6 (384-d, unit length): the very vectors shoal's
memory is searched with (``memory.embed``). ``encoding_format`` "base64" (the
OpenAI SDK's default) is little-endian float32, as OpenAI sends it.
``/v1/completions`` continues a prompt with a bot (the model name), for older
clients; it runs through the same path as chat.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from typing import Any, AsyncIterator, Literal

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from shoal.backends.base import generate
from shoal.errors import BadInput, ShoalError
from shoal.server.openai_compat import (
    ChatCompletionIn, Message, _another, _preferred_server, backend_for, build_request, caller, cluster_of,
    openai_error, translate,
)
from shoal.store.conversations import User

router = APIRouter(prefix="/v1", tags=["openai"])

EMBEDDING_MODEL = "all-minilm-l6-v2"
MAX_INPUTS = 256


class EmbeddingsIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(default=EMBEDDING_MODEL, max_length=200)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


def embedding_texts(value: Any) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not texts or not all(isinstance(t, str) for t in texts):
        raise BadInput("input must be a string or a list of strings (token arrays are not supported)",
                       hint="send the text itself")
    if len(texts) > MAX_INPUTS:
        raise BadInput(f"at most {MAX_INPUTS} inputs per request")
    if any(len(t) > 32_000 for t in texts):
        raise BadInput("an input is longer than 32000 characters")
    return texts


async def embed(request: Request, texts: list[str]) -> np.ndarray:
    swarm = request.app.state.swarm
    return np.asarray(await swarm.memories.embedder.embed(texts), dtype=np.float32)


def rough_tokens(texts: list[str]) -> int:
    return sum(max(1, len(t.split())) for t in texts)


@router.post("/embeddings", summary="MiniLM-L6 embeddings (384-d), the vectors shoal's memory uses")
async def embeddings(body: EmbeddingsIn, request: Request, user: User = Depends(caller)) -> Any:
    try:
        texts = embedding_texts(body.input)
        if body.dimensions not in (None, 384):
            raise BadInput(f"dimensions must be 384 for {EMBEDDING_MODEL}")
        vectors = await embed(request, texts)
    except ShoalError as exc:
        return openai_error(translate(exc))
    data = []
    for i, v in enumerate(vectors):
        emb: Any = base64.b64encode(v.astype("<f4").tobytes()).decode() if body.encoding_format == "base64" else v.tolist()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    n = rough_tokens(texts)
    return {"object": "list", "data": data, "model": EMBEDDING_MODEL, "usage": {"prompt_tokens": n, "total_tokens": n}}


class CompletionIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(max_length=200)
    prompt: str | list[str] = Field(max_length=64)
    max_tokens: int | None = Field(default=16, ge=1, le=8192)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=8)
    stream: bool = False
    echo: bool = False
    stream_options: dict[str, Any] | None = None


@router.post("/completions", summary="Continue a prompt with a bot (model = bot name), for older clients")
async def completions(body: CompletionIn, request: Request, user: User = Depends(caller)) -> Any:
    swarm = request.app.state.swarm
    prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    cid = "cmpl-" + uuid.uuid4().hex[:24]
    created = int(time.time())
    try:
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise BadInput("prompt must be a string or a list of strings")
        if len(prompts) * body.n > 16:
            raise BadInput("at most 16 completions per request (prompts × n)", hint="send fewer prompts or a smaller n")
        reqs = []
        for p in prompts:
            chat = ChatCompletionIn(
                model=body.model, messages=[Message(role="user", content=p)], max_tokens=body.max_tokens,
                temperature=body.temperature, top_p=body.top_p, stop=body.stop, seed=body.seed,
            )
            req, name, server = build_request(swarm, user, chat, gateway=cluster_of(request) is not None)
            reqs += [req] + [_another(req, i) for i in range(1, body.n)]
        backend = backend_for(request, swarm, _preferred_server(request, body) or server)  # type: ignore[arg-type]
        if body.stream:
            return StreamingResponse(
                _stream(backend, reqs, cid, created, name, prompts, body),
                media_type="text/event-stream", headers={"Cache-Control": "no-cache"},
            )
        outs = await asyncio.gather(*(generate(backend, r) for r in reqs))
    except ShoalError as exc:
        return openai_error(translate(exc))
    choices = [
        {"index": i, "text": (prompts[i // body.n] if body.echo else "") + o.text, "logprobs": None, "finish_reason": o.finish_reason}
        for i, o in enumerate(outs)
    ]
    prompt_tokens = sum(o.prompt_tokens for o in outs[:: body.n])
    completion_tokens = sum(o.completion_tokens for o in outs)
    return {
        "id": cid, "object": "text_completion", "created": created, "model": name, "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    }


async def _stream(backend: Any, reqs: list[Any], cid: str, created: int, model: str, prompts: list[str], body: CompletionIn) -> AsyncIterator[str]:
    import json

    counts = [0, 0]
    finished = False
    try:
        # one after another: each choice's text arrives in order, as older clients expect
        for i, req in enumerate(reqs):
            if body.echo:
                yield _frame(cid, created, model, i, prompts[i // body.n], None)
            async for chunk in backend.stream(req):
                if chunk.text:
                    yield _frame(cid, created, model, i, chunk.text, None)
                if chunk.finish_reason:
                    counts[0] += (chunk.prompt_tokens or 0) if i % body.n == 0 else 0
                    counts[1] += chunk.completion_tokens or 0
                    yield _frame(cid, created, model, i, "", chunk.finish_reason)
        if (body.stream_options or {}).get("include_usage"):
            tail = {"id": cid, "object": "text_completion", "created": created, "model": model, "choices": [],
                    "usage": {"prompt_tokens": counts[0], "completion_tokens": counts[1], "total_tokens": sum(counts)}}
            yield f"data: {json.dumps(tail)}\n\n"
        finished = True
        yield "data: [DONE]\n\n"
    except ShoalError as exc:
        err = translate(exc)
        finished = True
        yield f"data: {json.dumps({'error': {'message': err.message, 'type': err.type, 'code': err.code}})}\n\n"
    finally:
        if not finished:
            for r in reqs:
                r.cancel.cancel("the client disconnected")


def _frame(cid: str, created: int, model: str, i: int, text: str, finish: str | None) -> str:
    import json

    payload = {"id": cid, "object": "text_completion", "created": created, "model": model,
               "choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": finish}]}
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"
