"""MCP both ways, with the official ``mcp`` SDK (docs/tools.md).

*Server* (``shoal mcp``): memory search / add / forget and "ask the swarm" as
MCP tools, over stdio (the token given at start names the user) or streamable
HTTP (every request carries ``Authorization: Bearer <token>``; the user is
resolved per request, and a request without a valid token is refused before
it reaches the MCP layer). A tool only ever touches its caller's own data.

*Client*: each ``[[tools.mcp]]`` server is started (stdio) or reached (http)
by one task that owns its session (anyio scopes must be entered and left by
the same task) and serves calls from a queue; its tools join the registry as
``<server>.<tool>``, with the same permission checks as every other tool.
"""

import asyncio
import json
import logging
import os
from typing import Any

from shoal.errors import AuthError, BackendUnavailable, NotFound, ShoalError
from shoal.tools.config import McpServerConfig
from shoal.tools.registry import Tool, ToolContext, ToolRegistry

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- client
class McpSource:
    """One outside MCP server. A task enters and leaves the session (anyio scopes belong to one task);
    calls use the open session from any task, so a slow call does not hold up the others."""

    def __init__(self, config: McpServerConfig) -> None:
        self.config = config
        self.tools: list[Any] = []
        self.client: Any = None
        self._closing = asyncio.Event()
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._own(), name=f"mcp:{config.name}")

    def _client(self) -> Any:
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters

        if self.config.transport == "stdio":
            cmd = self.config.command
            return Client(StdioServerParameters(command=cmd[0], args=cmd[1:], env=self.config.env or None))
        return Client(self.config.url)

    async def _own(self) -> None:
        try:
            async with self._client() as client:
                self.tools = list((await client.list_tools()).tools)
                self.client = client
                self._ready.set_result(None)
                await self._closing.wait()
        except Exception as exc:
            err = BackendUnavailable(f"MCP server '{self.config.name}' failed: {type(exc).__name__}: {exc}",
                                     hint="check [[tools.mcp]] command/url in shoal.toml")
            if not self._ready.done():
                self._ready.set_exception(err)
            log.warning("%s", err.message)
        finally:
            self.client = None

    async def ready(self) -> None:
        await asyncio.wait_for(asyncio.shield(self._ready), timeout=self.config.timeout)

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        if self.client is None:
            raise BackendUnavailable(f"MCP server '{self.config.name}' is not running")
        try:
            result = await self.client.call_tool(name, arguments)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the server's failure is the call's, not the session's
            raise ShoalError(f"MCP server '{self.config.name}': {type(exc).__name__}: {exc}") from exc
        texts = [getattr(c, "text", "") for c in result.content if getattr(c, "type", "") == "text"]
        if result.is_error:
            raise ShoalError(f"{name}: {' '.join(texts) or 'the MCP tool failed'}")
        if result.structured_content is not None:
            return result.structured_content
        return "\n".join(texts)

    async def aclose(self) -> None:
        self._closing.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=10)
        except (asyncio.TimeoutError, Exception):
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def connect_servers(registry: ToolRegistry, servers: list[McpServerConfig]) -> list[McpSource]:
    """Start every configured MCP server and register its tools; one that fails is logged, not fatal."""
    sources = []
    for cfg in servers:
        source = McpSource(cfg)
        registry.on_close(source.aclose)
        try:
            await source.ready()
        except (asyncio.TimeoutError, ShoalError) as exc:
            registry.plugin_errors[f"mcp:{cfg.name}"] = getattr(exc, "message", None) or f"no answer in {cfg.timeout:g} s"
            log.warning("MCP server %s: %s", cfg.name, registry.plugin_errors[f"mcp:{cfg.name}"])
            await source.aclose()
            continue
        for t in source.tools:
            registry.register(Tool(
                name=f"{cfg.name}.{t.name}",
                description=t.description or t.name,
                parameters=dict(t.input_schema or {"type": "object"}),
                fn=_forward(source, t.name),
                source=f"mcp:{cfg.name}",
            ))
        sources.append(source)
    return sources


def _forward(source: McpSource, name: str) -> Any:
    async def fn(arguments: dict[str, Any], ctx: ToolContext) -> Any:
        return await source.call(name, arguments)

    return fn


# --------------------------------------------------------------------------- server
def build_server(swarm: Any, user: Any = None) -> Any:
    """shoal's MCP server over a started ``swarm``; ``user`` fixed (stdio) or from each request's token (http)."""
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError  # its message reaches the client (others are masked)

    from shoal.server.auth import authenticate

    server = MCPServer(
        "shoal",
        instructions="shoal's memory of you and its swarm of small models. Every tool acts for the token's user only.",
    )

    async def caller(ctx: Context) -> Any:
        if user is not None:
            return user
        headers = ctx.headers or {}
        try:
            return await authenticate(swarm.accounts, {k.lower(): v for k, v in headers.items()}, {})
        except AuthError as exc:
            raise ToolError(exc.message) from None

    @server.tool(description="Search what shoal remembers about you. Returns the best matches, best first.")
    async def memory_search(query: str, ctx: Context, limit: int = 5) -> list[dict[str, Any]]:
        who = await caller(ctx)
        found = await swarm.memories.search(who.id, query, limit=max(1, min(limit, 50)))
        return [{"id": m.id, "kind": m.kind, "text": m.text, "created_at": m.created_at} for m in found]

    @server.tool(description="Tell shoal to remember a note about you.")
    async def memory_add(text: str, ctx: Context) -> dict[str, Any]:
        who = await caller(ctx)
        text = text.strip()
        if not text or len(text) > 4000:
            raise ToolError("the note must be 1 to 4000 characters")
        m, _ = await swarm.memories.add(who.id, "raw", text, method="mcp")
        return {"id": m.id, "text": m.text}

    @server.tool(description="Forget one of your memories (and every copy made from it), by its id.")
    async def memory_forget(memory_id: str, ctx: Context) -> dict[str, Any]:
        who = await caller(ctx)
        try:
            erased = await swarm.forget_memory(memory_id, who)
        except NotFound:
            raise ToolError(f"you have no memory '{memory_id}'") from None
        return {"forgotten": memory_id, "deleted": len(getattr(erased, "deleted", []) or [])}

    @server.tool(description="Ask shoal's swarm something; returns its reply. Pass conversation to continue one.")
    async def ask(question: str, ctx: Context, conversation: str = "") -> dict[str, Any]:
        who = await caller(ctx)
        if conversation:
            try:
                conv = await swarm.conversations.get_conversation(conversation, user_id=who.id)
            except NotFound:
                raise ToolError(f"you have no conversation '{conversation}'") from None
        else:
            conv = await swarm.conversations.create_conversation(who.id, title="mcp")
        result = await swarm.run_turn(conv.id, who.id, question, timeout=120)
        return {"conversation": conv.id, "reply": result.reply, "settled": result.settled}

    return server


class BearerAuth:
    """ASGI: an HTTP request without a valid shoal token gets 401 before it reaches MCP."""

    def __init__(self, app: Any, accounts: Any) -> None:
        self.app, self.accounts = app, accounts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            from shoal.server.auth import authenticate

            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            try:
                await authenticate(self.accounts, headers, {})
            except AuthError as exc:
                body = json.dumps({"error": {"code": exc.code, "message": exc.message, "hint": exc.hint}}).encode()
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


async def serve_stdio(env: Any, token: str) -> None:
    """``shoal mcp``: serve over stdin/stdout as the token's user (stray output goes to stderr)."""
    from mcp.server.stdio import stdio_server

    from shoal.runtime.swarm import Swarm
    from shoal.server.auth import authenticate

    async with stdio_server() as (read, write):  # claims fd 1 first: llama.cpp's chatter cannot reach the wire
        swarm = Swarm(env)
        await swarm.start()
        try:
            user = await authenticate(swarm.accounts, {"authorization": f"Bearer {token}"}, {})
            low = build_server(swarm, user)._lowlevel_server
            await low.run(read, write, low.create_initialization_options())
        finally:
            await swarm.stop()


async def serve_http(env: Any, host: str, port: int) -> None:
    """``shoal mcp --http``: streamable HTTP at /mcp; every request needs a bearer token."""
    import uvicorn

    from shoal.runtime.swarm import Swarm

    swarm = Swarm(env)
    await swarm.start()
    try:
        app = build_server(swarm).streamable_http_app(streamable_http_path="/mcp", stateless_http=True, host=host)
        config = uvicorn.Config(BearerAuth(app, swarm.accounts), host=host, port=port, log_level="warning")
        await uvicorn.Server(config).serve()
    finally:
        await swarm.stop()


def token_from_env(token: str | None) -> str:
    value = token or os.environ.get("SHOAL_TOKEN", "")
    if not value:
        raise AuthError("shoal mcp needs a token", hint="pass --token or set SHOAL_TOKEN (`shoal tokens create --user NAME`)")
    return value
