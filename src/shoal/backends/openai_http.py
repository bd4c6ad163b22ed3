"""OpenAI-compatible HTTP backend (the base of llama.cpp server, Ollama, LM Studio, vLLM; and OpenAI).

Streams ``/v1/chat/completions`` as server-sent events. Cancelling the
request closes the connection, which is how these servers learn to stop.
A request with a ``prefix`` (mid-stream failover) continues the partial
answer as well as the server allows (see ``shoal.backends.residency``).
Kind-specific control (residency, load, unload) lives in the subclasses.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, AsyncIterator, ClassVar

import httpx

from shoal.backends.residency import Continuation, Residency, ResidentModel
from shoal.config import EngineConfig, ServerConfig
from shoal.errors import BackendError, BackendProtocolError, BackendUnavailable, GenerationCancelled
from shoal.types import Chunk, GenerateRequest

#: how often a stalled stream re-checks its cancel flag (seconds)
_CANCEL_POLL = 0.05


class OpenAIHTTPBackend:
    supports_grammar: ClassVar[bool] = True
    supports_embeddings: ClassVar[bool] = False
    supports_lora: ClassVar[bool] = False
    #: a hosted API: every listed model is ready, nothing to load
    fixed_model: ClassVar[bool] = False
    default_concurrency: ClassVar[int] = 16

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        kind: str = "openai",
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_connections: int = 1024,
    ) -> None:
        self.name = name
        self.kind = kind
        self.base_url = base_url.rstrip("/")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[:-3]
        self.default_model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)),
            # concurrency is limited by the cluster's admission control, not here
            # idle connections are kept for reuse: under load, a new TCP connection per request costs more
            # than the request (bench/ws_load.py: 2,300 connects for 2,400 requests with 64 kept)
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=min(max_connections, 512)),
        )

    @classmethod
    def from_config(cls, server: ServerConfig, engine: EngineConfig) -> "OpenAIHTTPBackend":
        assert server.url is not None
        key = os.environ.get(server.api_key_env) if server.api_key_env else None
        return cls(
            server.name,
            server.url,
            kind=server.kind,
            model=server.models[0] if server.models else None,
            api_key=key,
            timeout=server.timeout,
            **cls.options(server),
        )

    @classmethod
    def options(cls, server: ServerConfig) -> dict[str, Any]:
        """Keyword arguments a subclass takes from the server's config."""
        return {}

    # -- control plane (see shoal.backends.residency) ---------------------
    @property
    def can_load(self) -> bool:
        return False

    @property
    def continuation(self) -> Continuation:
        return "message"

    def canonical(self, model: str) -> str:
        return model

    async def residency(self, timeout: float) -> Residency:
        data = await self._get_json("/v1/models", timeout)
        ids = [m.get("id", "") for m in data.get("data", []) if isinstance(m, dict) and m.get("id")]
        return Residency(loaded={i: ResidentModel(i) for i in ids}, available={i: None for i in ids})

    async def load(self, model: str) -> None:
        raise BackendError(f"server '{self.name}' ({self.kind}) cannot load models on request")

    async def unload(self, model: str) -> None:
        raise BackendError(f"server '{self.name}' ({self.kind}) cannot unload models on request")

    async def _get_json(self, path: str, timeout: float) -> Any:
        try:
            resp = await self._client.get(path, timeout=timeout)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(
                f"server '{self.name}' at {self.base_url} does not answer: {exc.__class__.__name__}: {exc}",
                hint="is the server running? check the url in shoal.toml",
            ) from exc
        if resp.status_code >= 400:
            raise _http_error(self.name, resp.status_code, resp.text[:300])
        try:
            return resp.json()
        except ValueError as exc:
            raise BackendProtocolError(f"server '{self.name}' answered {path} with something that is not JSON") from exc

    async def _post_json(self, path: str, body: dict[str, Any], timeout: float | None = None) -> Any:
        try:
            resp = await self._client.post(path, json=body, timeout=timeout or httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(
                f"server '{self.name}' at {self.base_url} does not answer: {exc.__class__.__name__}: {exc}"
            ) from exc
        if resp.status_code >= 400:
            raise _http_error(self.name, resp.status_code, resp.text[:300])
        try:
            return resp.json()
        except ValueError:
            return {}

    # -- request shaping ------------------------------------------------
    def payload(self, req: GenerateRequest) -> dict[str, Any]:
        s = req.sampling
        messages = [m.as_dict() for m in req.messages]
        body: dict[str, Any] = {
            "model": req.model or self.default_model or "default",
            "messages": messages,
            "stream": True,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
        }
        if s.stop:
            body["stop"] = list(s.stop)
        if s.presence_penalty:
            body["presence_penalty"] = s.presence_penalty
        if s.frequency_penalty:
            body["frequency_penalty"] = s.frequency_penalty
        if s.seed is not None:
            body["seed"] = s.seed
        if s.min_tokens and self.kind in ("vllm",):
            body["min_tokens"] = s.min_tokens
        if self.kind in ("llamacpp",):
            body["top_k"] = s.top_k
            body["min_p"] = s.min_p
            body["repeat_penalty"] = s.repeat_penalty
            if s.dry_multiplier:
                body.update(dry_multiplier=s.dry_multiplier, dry_base=s.dry_base, dry_allowed_length=s.dry_allowed_length,
                            dry_penalty_last_n=s.dry_last_n)
        if req.grammar and self.kind == "llamacpp":
            body["grammar"] = req.grammar
        elif req.json_schema is not None:
            if self.kind == "llamacpp":
                # llama.cpp servers (both llama-server and llama_cpp.server)
                # accept a schema inside a json_object response_format
                body["response_format"] = {"type": "json_object", "schema": req.json_schema}
            else:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": req.json_schema, "strict": True},
                }
        if req.prefix:
            # continue an assistant message already partly written
            messages.append({"role": "assistant", "content": req.prefix})
            body.update(self.prefill_flags())
        return body

    def prefill_flags(self) -> dict[str, Any]:
        """Extra body fields that make the server continue a trailing assistant message."""
        return {}

    def completion_prompt(self, req: GenerateRequest) -> str | None:
        """The raw prompt that continues ``req.prefix`` exactly, when the chat template is known."""
        return None

    def completion_payload(self, req: GenerateRequest, prompt: str) -> dict[str, Any]:
        body = self.payload(GenerateRequest(messages=[], model=req.model, sampling=req.sampling))
        del body["messages"]
        body["prompt"] = prompt
        return body

    # -- the contract -----------------------------------------------------
    async def stream(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        if req.cancel.cancelled:
            raise GenerationCancelled(req.cancel.reason or "cancelled")
        prompt = self.completion_prompt(req) if req.prefix else None
        if prompt is not None:
            path, body = "/v1/completions", self.completion_payload(req, prompt)
        else:
            path, body = "/v1/chat/completions", self.payload(req)
        n_chunks = 0
        try:
            async with self._client.stream("POST", path, json=body) as resp:
                if resp.status_code >= 400:
                    detail = (await resp.aread()).decode("utf-8", "replace")[:500]
                    raise _http_error(self.name, resp.status_code, detail)
                # one watcher per request closes the connection when the request
                # is cancelled (cheaper than a task per streamed line)
                watcher = asyncio.create_task(_close_on_cancel(req, resp))
                try:
                    async for line in resp.aiter_lines():
                        if req.cancel.cancelled:
                            raise GenerationCancelled(req.cancel.reason or "cancelled")
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            # a stream always finishes with a finish_reason first;
                            # llama_cpp.server sends a bare [DONE] when another
                            # request interrupts this one
                            break
                        try:
                            event = json.loads(data)
                        except json.JSONDecodeError as exc:
                            raise BackendProtocolError(
                                f"server '{self.name}' sent an event that is not JSON: {data[:200]!r}"
                            ) from exc
                        if "error" in event:
                            raise BackendError(f"server '{self.name}' reported: {event['error']}")
                        choices = event.get("choices") or []
                        usage = event.get("usage") or {}
                        if not choices:
                            continue
                        choice = choices[0]
                        if "text" in choice:  # /v1/completions
                            text = choice.get("text") or ""
                        else:
                            text = (choice.get("delta") or {}).get("content") or ""
                        finish = choice.get("finish_reason")
                        if text:
                            n_chunks += 1
                        if finish:
                            yield Chunk(
                                text=text,
                                finish_reason="length" if finish == "length" else "stop",
                                prompt_tokens=usage.get("prompt_tokens"),
                                completion_tokens=usage.get("completion_tokens", n_chunks),
                                served_by=self.name,
                            )
                            return
                        if text:
                            yield Chunk(text=text, served_by=self.name)
                finally:
                    watcher.cancel()
                if req.cancel.cancelled:
                    raise GenerationCancelled(req.cancel.reason or "cancelled")
                raise BackendUnavailable(
                    f"server '{self.name}' closed the stream before finishing",
                    hint="the server may have crashed or restarted, or another client's request interrupted "
                    "this one (llama_cpp.server does that unless started with --interrupt_requests false)",
                )
        except (httpx.HTTPError, httpx.StreamError) as exc:
            if req.cancel.cancelled:
                raise GenerationCancelled(req.cancel.reason or "cancelled") from exc
            what = "cannot reach" if n_chunks == 0 else "lost the stream from"
            raise BackendUnavailable(
                f"{what} server '{self.name}' at {self.base_url}: {exc.__class__.__name__}: {exc}",
                hint="is the server running? check the url in shoal.toml",
            ) from exc

    async def models(self) -> list[str]:
        try:
            resp = await self._client.get("/v1/models")
            resp.raise_for_status()
            data = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise BackendUnavailable(f"cannot list models on server '{self.name}': {exc}") from exc
        return [m.get("id", "") for m in data.get("data", []) if isinstance(m, dict)]

    async def aclose(self) -> None:
        await self._client.aclose()


async def _close_on_cancel(req: GenerateRequest, resp: httpx.Response) -> None:
    """Close the response as soon as the request is cancelled; the server sees the disconnect."""
    while not req.cancel.cancelled:
        await asyncio.sleep(_CANCEL_POLL)
    await resp.aclose()


def _http_error(name: str, status: int, detail: str) -> BackendError:
    msg = f"server '{name}' answered HTTP {status}: {detail}"
    if status in (502, 503, 504):
        return BackendUnavailable(msg)
    if status == 404:
        return BackendError(msg, hint="is the model name right? `shoal bots list` shows what each bot asks for")
    return BackendProtocolError(msg) if status >= 500 else BackendError(msg)
