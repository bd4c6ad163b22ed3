"""Protocol fixtures: small real HTTP servers on loopback speaking the documented APIs
of servers that cannot run here (Ollama, LM Studio, vLLM, llama.cpp's C++ llama-server).

They do no inference. Chat completions stream a fixed list of words; every
request is recorded so tests can check what shoal sent (loads, unloads,
continuation flags). Shapes follow each project's documentation:

- Ollama: https://github.com/ollama/ollama/blob/main/docs/api.md (/api/ps, /api/tags, /api/generate)
- LM Studio: https://lmstudio.ai/docs/developer/rest (/api/v1/models, /load, /unload; beta /api/v0/models)
- vLLM: OpenAI-compatible server (/v1/models with max_model_len, continue_final_message)
- llama-server: tools/server/README.md (/props, /slots, /health, /v1/completions)
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

GIB = 1 << 30


@dataclass
class Recorded:
    method: str
    path: str
    body: Any


@dataclass
class Behaviour:
    """What the fake does to generation requests (tests change it on the fly)."""

    words: list[str] = field(default_factory=lambda: [f" w{i}" for i in range(12)])
    delay: float = 0.0
    #: answer every chat request with this HTTP status (e.g. 503)
    fail_status: int | None = None
    #: drop the connection after this many chunks (a crash mid-stream)
    die_after: int | None = None
    #: wait here before streaming (released by the test), to hold a request in flight
    gate: threading.Event | None = None


class FakeServer:
    """Base: a Starlette app run by uvicorn in its own thread on a free loopback port."""

    model_name = "fake"

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.behaviour = Behaviour()
        self.disconnects = 0
        self.completed = 0
        self.in_flight = 0
        app = Starlette(routes=self.routes())
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical"))
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server.serve()), daemon=True)

    def routes(self) -> list[Route]:
        return [
            Route("/v1/models", self.v1_models),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
        ]

    def start(self) -> "FakeServer":
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fixture server did not start")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def calls(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    async def record(self, request: Request) -> Any:
        body = None
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                body = None
        self.requests.append(Recorded(request.method, request.url.path, body))
        return body

    # -- OpenAI-compatible generation ------------------------------------------------
    async def v1_models(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse({"object": "list", "data": [{"id": self.model_name, "object": "model", "owned_by": "me"}]})

    async def chat(self, request: Request) -> Response:
        body = await self.record(request)
        return await self.generate(body, completion=False)

    async def completions(self, request: Request) -> Response:
        body = await self.record(request)
        return await self.generate(body, completion=True)

    async def generate(self, body: dict[str, Any], *, completion: bool) -> Response:
        b = self.behaviour
        if b.fail_status:
            return JSONResponse({"error": {"message": "fixture failure"}}, status_code=b.fail_status)
        model = body.get("model", self.model_name)
        words = b.words[: body.get("max_tokens") or len(b.words)]
        obj = "text_completion" if completion else "chat.completion.chunk"

        def event(text: str, finish: str | None) -> bytes:
            choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
            if completion:
                choice["text"] = text
            else:
                choice["delta"] = {"content": text} if text else {}
            data: dict[str, Any] = {"id": "x", "object": obj, "created": 0, "model": model, "choices": [choice]}
            if finish:
                data["usage"] = {"prompt_tokens": 3, "completion_tokens": len(words)}
            return f"data: {json.dumps(data)}\n\n".encode()

        async def sse() -> AsyncIterator[bytes]:
            self.in_flight += 1
            done = False
            try:
                if b.gate is not None:
                    while not b.gate.is_set():
                        await asyncio.sleep(0.01)
                for i, w in enumerate(words):
                    if b.die_after is not None and i >= b.die_after:
                        raise ConnectionAbortedError("fixture: crash mid-stream")
                    if b.delay:
                        await asyncio.sleep(b.delay)
                    yield event(w, None)
                yield event("", "length" if len(words) == body.get("max_tokens") else "stop")
                yield b"data: [DONE]\n\n"
                done = True
                self.completed += 1
            finally:
                self.in_flight -= 1
                if not done:
                    self.disconnects += 1

        return StreamingResponse(sse(), media_type="text/event-stream")


class OllamaFixture(FakeServer):
    """Ollama: ``models`` on disk (name -> bytes), some of them ``loaded``."""

    def __init__(self, models: dict[str, int], loaded: list[str] | None = None) -> None:
        self.models = dict(models)
        self.loaded: list[str] = list(loaded or [])
        super().__init__()

    def routes(self) -> list[Route]:
        return super().routes() + [
            Route("/api/ps", self.ps),
            Route("/api/tags", self.tags),
            Route("/api/generate", self.api_generate, methods=["POST"]),
            Route("/api/version", self.version),
        ]

    def _model(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "size": self.models[name],
            "digest": "0" * 64,
            "details": {"format": "gguf", "family": "llama", "parameter_size": "1B", "quantization_level": "Q4_0"},
        }

    async def ps(self, request: Request) -> Response:
        await self.record(request)
        out = []
        for name in self.loaded:
            m = self._model(name)
            m.update(expires_at="2099-01-01T00:00:00Z", size_vram=self.models[name])
            out.append(m)
        return JSONResponse({"models": out})

    async def tags(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse({"models": [{**self._model(n), "modified_at": "2024-01-01T00:00:00Z"} for n in self.models]})

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": "0.6.0"})

    async def api_generate(self, request: Request) -> Response:
        body = await self.record(request)
        name = body.get("model", "")
        if name not in self.models:
            return JSONResponse({"error": f"model '{name}' not found"}, status_code=404)
        if body.get("keep_alive") == 0:
            if name in self.loaded:
                self.loaded.remove(name)
            return JSONResponse({"model": name, "created_at": "2024-01-01T00:00:00Z", "response": "", "done": True, "done_reason": "unload"})
        if name not in self.loaded:
            self.loaded.append(name)
        return JSONResponse({"model": name, "created_at": "2024-01-01T00:00:00Z", "response": "", "done": True})

    async def chat(self, request: Request) -> Response:
        body = await self.record(request)
        name = body.get("model", "")
        if name not in self.models:
            return JSONResponse({"error": {"message": f"model '{name}' not found"}}, status_code=404)
        if name not in self.loaded:  # Ollama loads on demand
            self.loaded.append(name)
        return await self.generate(body, completion=False)


class LMStudioFixture(FakeServer):
    """LM Studio 0.4 (v1 REST API) or, with ``v1=False``, the beta v0 API only."""

    def __init__(self, models: dict[str, int], loaded: list[str] | None = None, *, v1: bool = True) -> None:
        self.models = dict(models)
        self.instances: dict[str, str] = {m: m for m in loaded or []}
        self.v1 = v1
        super().__init__()

    def routes(self) -> list[Route]:
        routes = super().routes() + [Route("/api/v0/models", self.v0_models)]
        if self.v1:
            routes += [
                Route("/api/v1/models", self.api_v1_models),
                Route("/api/v1/models/load", self.load, methods=["POST"]),
                Route("/api/v1/models/unload", self.unload, methods=["POST"]),
            ]
        return routes

    async def api_v1_models(self, request: Request) -> Response:
        await self.record(request)
        out = []
        for key, size in self.models.items():
            inst = self.instances.get(key)
            out.append(
                {
                    "type": "llm",
                    "publisher": "me",
                    "key": key,
                    "display_name": key,
                    "architecture": "llama",
                    "quantization": {"name": "Q4_K_M", "bits_per_weight": 4.8},
                    "size_bytes": size,
                    "params_string": "1B",
                    "loaded_instances": [{"id": inst, "config": {"context_length": 4096, "parallel": 2}}] if inst else [],
                    "max_context_length": 8192,
                    "format": "gguf",
                }
            )
        out.append({"type": "embedding", "key": "nomic-embed", "size_bytes": 1, "loaded_instances": []})
        return JSONResponse({"models": out})

    async def v0_models(self, request: Request) -> Response:
        await self.record(request)
        data = [
            {
                "id": key,
                "object": "model",
                "type": "llm",
                "publisher": "me",
                "arch": "llama",
                "compatibility_type": "gguf",
                "quantization": "Q4_K_M",
                "state": "loaded" if key in self.instances else "not-loaded",
                "max_context_length": 8192,
            }
            for key in self.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def load(self, request: Request) -> Response:
        body = await self.record(request)
        key = body["model"]
        inst = f"{key}:{len(self.requests)}"
        self.instances[key] = inst
        return JSONResponse({"type": "llm", "instance_id": inst, "load_time_seconds": 0.1, "status": "loaded"})

    async def unload(self, request: Request) -> Response:
        body = await self.record(request)
        inst = body["instance_id"]
        for key, i in list(self.instances.items()):
            if i == inst:
                del self.instances[key]
                return JSONResponse({"instance_id": inst})
        return JSONResponse({"error": {"message": f"no instance {inst}"}}, status_code=404)


class VLLMFixture(FakeServer):
    model_name = "Qwen/Qwen2.5-0.5B-Instruct"

    def routes(self) -> list[Route]:
        return super().routes() + [Route("/health", self.health)]

    async def v1_models(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "id": self.model_name,
                        "object": "model",
                        "created": 0,
                        "owned_by": "vllm",
                        "root": self.model_name,
                        "parent": None,
                        "max_model_len": 4096,
                    }
                ],
            }
        )

    async def health(self, request: Request) -> Response:
        return Response(status_code=200)


class LlamaServerFixture(FakeServer):
    """llama.cpp's C++ ``llama-server`` with ``--parallel slots`` and ``--slots``."""

    model_name = "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf"
    template = (
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )

    def __init__(self, slots: int = 4, busy: int = 0) -> None:
        self.slots, self.busy = slots, busy
        super().__init__()

    def routes(self) -> list[Route]:
        return super().routes() + [
            Route("/props", self.props),
            Route("/slots", self.slots_state),
            Route("/health", self.health),
            Route("/v1/completions", self.completions, methods=["POST"]),
        ]

    async def props(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse(
            {
                "default_generation_settings": {"n_ctx": 4096, "params": {"temperature": 0.8}},
                "total_slots": self.slots,
                "model_path": self.model_name,
                "chat_template": self.template,
                "bos_token": "<|endoftext|>",
                "eos_token": "<|im_end|>",
                "build_info": "b5000-fixture",
            }
        )

    async def slots_state(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse([{"id": i, "n_ctx": 1024, "is_processing": i < self.busy} for i in range(self.slots)])

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})
