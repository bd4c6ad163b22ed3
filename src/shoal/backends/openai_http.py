"""OpenAI-compatible HTTP backend (the base of llama.cpp server, Ollama, LM Studio, vLLM; and OpenAI).

Streams ``/v1/chat/completions`` as server-sent events. Cancelling the
request closes the connection, which is how these servers learn to stop.
A request with a ``prefix`` (mid-stream failover) continues the partial
answer as well as the server allows (see ``shoal.backends.residency``).
Kind-specific control (residency, load, unload) lives in the subclasses.

The HTTP client is aiohttp: streaming 800 answers at once costs it a fifth of
the CPU httpx needs (measured in docs/performance.md), and under load that
CPU is the event loop every websocket shares.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, AsyncIterator, ClassVar

import aiohttp

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
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self._max_connections = max_connections
        #: one session per event loop (a session belongs to the loop it was made on)
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        #: set by ``aclose``: the backend has let go of its connections
        self.closed = False

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        s = self._session
        if s is None or s.closed or self._session_loop is not loop:
            self._session_loop = loop
            s = self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=min(5.0, self.timeout), sock_read=self.timeout),
                # concurrency is limited by the cluster's admission control, not here; idle
                # connections are kept for reuse: under load a new TCP connection per request
                # costs more than the request (bench/ws_load.py)
                connector=aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, keepalive_timeout=60),
                # a server's error body can be anything: read it as text, never fail on its type
                raise_for_status=False,
            )
        return s

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

    async def _call(self, method: str, path: str, body: dict[str, Any] | None, timeout: float | None) -> tuple[int, str]:
        """(status, body text) of one plain request; a server that does not answer is BackendUnavailable."""
        t = aiohttp.ClientTimeout(total=timeout or self.timeout, sock_connect=min(5.0, timeout or self.timeout))
        try:
            async with self._client().request(method, self.base_url + path, json=body, timeout=t) as resp:
                return resp.status, await resp.text(errors="replace")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise BackendUnavailable(
                f"server '{self.name}' at {self.base_url} does not answer: {_describe(exc)}",
                hint="is the server running? check the url in shoal.toml",
            ) from exc

    async def _get_json(self, path: str, timeout: float) -> Any:
        status, text = await self._call("GET", path, None, timeout)
        if status >= 400:
            raise _http_error(self.name, status, text[:300])
        try:
            return json.loads(text)
        except ValueError as exc:
            raise BackendProtocolError(f"server '{self.name}' answered {path} with something that is not JSON") from exc

    async def _post_json(self, path: str, body: dict[str, Any], timeout: float | None = None) -> Any:
        status, text = await self._call("POST", path, body, timeout)
        if status >= 400:
            raise _http_error(self.name, status, text[:300])
        try:
            return json.loads(text)
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
            async with self._client().post(self.base_url + path, json=body) as resp:
                if resp.status >= 400:
                    detail = (await resp.text(errors="replace"))[:500]
                    raise _http_error(self.name, resp.status, detail)
                # one watcher per request closes the connection when the request
                # is cancelled (cheaper than a task per streamed line)
                watcher = asyncio.create_task(_close_on_cancel(req, resp))
                try:
                    # every event that arrived in one read becomes one chunk: when shoal is busy and
                    # tokens pile up in the socket they travel on together (one delta, one frame)
                    async for datas in _sse_reads(resp):
                        if req.cancel.cancelled:
                            raise GenerationCancelled(req.cancel.reason or "cancelled")
                        texts: list[str] = []
                        finish, usage = None, {}
                        for data in datas:
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
                            usage = event.get("usage") or usage
                            if not choices:
                                continue
                            choice = choices[0]
                            if "text" in choice:  # /v1/completions
                                text = choice.get("text") or ""
                            else:
                                text = (choice.get("delta") or {}).get("content") or ""
                            if text:
                                n_chunks += 1
                                texts.append(text)
                            if finish := choice.get("finish_reason"):
                                break
                        else:
                            if texts:
                                yield Chunk(text="".join(texts), served_by=self.name, tokens=len(texts))
                            continue
                        if finish:
                            yield Chunk(
                                text="".join(texts),
                                finish_reason="length" if finish == "length" else "stop",
                                prompt_tokens=usage.get("prompt_tokens"),
                                completion_tokens=usage.get("completion_tokens", n_chunks),
                                served_by=self.name,
                                tokens=len(texts),
                            )
                            return
                        if texts:  # a bare [DONE]: what came before it still counts
                            yield Chunk(text="".join(texts), served_by=self.name, tokens=len(texts))
                        break
                finally:
                    watcher.cancel()
                if req.cancel.cancelled:
                    raise GenerationCancelled(req.cancel.reason or "cancelled")
                raise BackendUnavailable(
                    f"server '{self.name}' closed the stream before finishing",
                    hint="the server may have crashed or restarted, or another client's request interrupted "
                    "this one (llama_cpp.server does that unless started with --interrupt_requests false)",
                )
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            if req.cancel.cancelled:
                raise GenerationCancelled(req.cancel.reason or "cancelled") from exc
            what = "cannot reach" if n_chunks == 0 else "lost the stream from"
            raise BackendUnavailable(
                f"{what} server '{self.name}' at {self.base_url}: {_describe(exc)}",
                hint="is the server running? check the url in shoal.toml",
            ) from exc

    async def models(self) -> list[str]:
        try:
            data = await self._get_json("/v1/models", self.timeout)
        except BackendError as exc:
            raise BackendUnavailable(f"cannot list models on server '{self.name}': {exc}") from exc
        return [m.get("id", "") for m in data.get("data", []) if isinstance(m, dict)]

    async def aclose(self) -> None:
        self.closed = True
        if self._session is not None and not self._session.closed:
            try:
                await self._session.close()
            except RuntimeError:  # made on a loop that is gone: nothing left to close
                pass
        self._session = None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "TimeoutError: no answer in time"
    return f"{exc.__class__.__name__}: {exc}"


async def _sse_reads(resp: aiohttp.ClientResponse) -> AsyncIterator[list[str]]:
    """The ``data:`` payloads of a server-sent event stream, grouped by the network read they came in."""
    buf = b""
    async for piece in resp.content.iter_any():
        buf += piece
        if b"\n" not in buf:
            continue
        *lines, buf = buf.split(b"\n")
        datas = [ln[5:].strip().decode("utf-8", "replace") for ln in lines if ln.startswith(b"data:")]
        if datas:
            yield datas
    if buf.startswith(b"data:"):
        yield [buf[5:].strip().decode("utf-8", "replace")]


async def _close_on_cancel(req: GenerateRequest, resp: aiohttp.ClientResponse) -> None:
    """Close the response as soon as the request is cancelled; the server sees the disconnect."""
    while not req.cancel.cancelled:
        await asyncio.sleep(_CANCEL_POLL)
    resp.close()


def _http_error(name: str, status: int, detail: str) -> BackendError:
    msg = f"server '{name}' answered HTTP {status}: {detail}"
    if status in (502, 503, 504):
        return BackendUnavailable(msg)
    if status == 404:
        return BackendError(msg, hint="is the model name right? `shoal bots list` shows what each bot asks for")
    return BackendProtocolError(msg) if status >= 500 else BackendError(msg)
