"""A minimal OpenAI-compatible model server for benchmarks (loopback only).

It does no inference: /v1/chat/completions streams a fixed number of short
tokens at once (or with a set delay), and answers schema-constrained
requests with the smallest valid JSON instance. It is the cheapest upstream
a benchmark can run, so what is measured is shoal, not a model.

    python bench/upstream.py --port 9100 --tokens 16 --delay-ms 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def minimal(schema: dict[str, Any]) -> Any:
    """The smallest instance of a JSON schema (enough for shoal's own schemas)."""
    if "enum" in schema:
        return schema["enum"][0]
    t = schema.get("type")
    if t == "object":
        props = schema.get("properties", {})
        return {k: minimal(props.get(k, {})) for k in schema.get("required", [])}
    return {"array": [], "string": "", "boolean": False, "integer": 0, "number": 0}.get(t, None)


def make_app(tokens: int, delay: float) -> Starlette:
    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "bench", "object": "model", "owned_by": "bench"}]})

    async def chat(request: Request) -> Response:
        body = await request.json()
        rf = body.get("response_format") or {}
        schema = (rf.get("json_schema") or {}).get("schema") or rf.get("schema")
        text = [json.dumps(minimal(schema))] if schema else [f" tok{i}" for i in range(tokens)]
        created = int(time.time())
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "bench",
                    "object": "chat.completion",
                    "created": created,
                    "model": body.get("model", "bench"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(text)}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": len(text), "total_tokens": len(text) + 1},
                }
            )

        async def sse() -> AsyncIterator[bytes]:
            for piece in text:
                if delay:
                    await asyncio.sleep(delay)
                chunk = {"id": "bench", "object": "chat.completion.chunk", "created": created, "model": "bench",
                         "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            done = {"id": "bench", "object": "chat.completion.chunk", "created": created, "model": "bench",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": len(text), "total_tokens": len(text) + 1}}
            yield f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode()

        return StreamingResponse(sse(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])])


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--delay-ms", type=float, default=0.0)
    a = p.parse_args()
    uvicorn.run(make_app(a.tokens, a.delay_ms / 1000), host="127.0.0.1", port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
