"""The tool registry: typed functions with JSON schemas, and the one door every call goes through.

A tool is an async function ``fn(arguments, ctx)`` with a JSON schema for its
arguments. Built-ins (``tools.builtin``), plugins (the entry-point group
``shoal.tools``: each entry point is a ``register(registry)`` function, as the
built-ins are) and tools of outside MCP servers (``tools.mcp``) register the
same way. ``ToolRegistry.call`` is the only way to run one: it records the
call, checks that the tool exists and is enabled, that the asking bot may use
it, validates the arguments against the schema, bounds the time, and records
the result. A failing tool is an outcome, never an exception in the bot.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from shoal.errors import BadInput, NotFound, PermissionDenied, ShoalError
from shoal.store.ids import new_id
from shoal.tools.config import ToolsConfig

if TYPE_CHECKING:
    from shoal.memory.store import MemoryStore
    from shoal.runtime.messages import Event
    from shoal.store.conversations import ConversationStore

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "shoal.tools"


@dataclass
class ToolContext:
    """Who is asking: the user whose data a tool may touch, and where the call is recorded."""

    user_id: str
    memories: "MemoryStore | None" = None
    conversations: "ConversationStore | None" = None
    config: ToolsConfig = field(default_factory=ToolsConfig)
    conversation: str | None = None
    turn: str | None = None
    #: the bot (or "v1:<user>", "mcp:<user>") making the call
    caller: str = ""
    #: publishes an event of the conversation (a bot's ``emit``); None: not recorded
    emit: "Callable[[Event], Awaitable[None]] | None" = None


ToolFn = Callable[[dict[str, Any], ToolContext], Awaitable[Any]]


@dataclass
class Tool:
    name: str
    description: str
    #: JSON schema of the arguments (an object)
    parameters: dict[str, Any]
    fn: ToolFn
    #: a regular expression: a message matching it may want this tool (rules before the model)
    hint: str | None = None
    #: builtin, plugin:<entry point>, mcp:<server>
    source: str = "builtin"
    #: a regular expression on a client's function (its name and description) doing this tool's job: with
    #: ``tool_choice`` "auto" that function inherits ``hint`` and ``rule`` (calling.ruled)
    alike: str | None = None
    #: this tool's arguments read from a message by rule (None: the rule cannot tell; the model writes them)
    rule: Callable[[str], dict[str, Any] | None] | None = None

    def spec(self) -> dict[str, Any]:
        """The tool as OpenAI's ``tools`` entry (MCP and Ollama use the same fields)."""
        return {"type": "function", "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass
class ToolOutcome:
    call_id: str
    tool: str
    status: str  # ok, error, refused, invalid, timeout, unknown
    result: str = ""
    error: str | None = None
    value: Any = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def permits(allow: Iterable[str], name: str) -> bool:
    """``allow`` holds tool names or patterns ("*", "files.*")."""
    return any(a == name or fnmatch.fnmatchcase(name, a) for a in allow)


def schema_error(schema: dict[str, Any], arguments: Any) -> str | None:
    """Why ``arguments`` does not follow ``schema`` (None: it does)."""
    import jsonschema

    try:
        validator = jsonschema.Draft202012Validator(schema)
        errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
    except jsonschema.SchemaError as exc:
        return f"the tool's schema is invalid: {exc.message}"
    if not errors:
        return None
    e = errors[0]
    where = "/".join(str(p) for p in e.path)
    return f"{where + ': ' if where else ''}{e.message}"


class ToolRegistry:
    """Tools by name; ``call`` checks and records every use."""

    def __init__(self, config: ToolsConfig | None = None) -> None:
        self.config = config or ToolsConfig()
        self._tools: dict[str, Tool] = {}
        #: outcomes by status, and plugins that failed to load
        self.stats: Counter[str] = Counter()
        self.plugin_errors: dict[str, str] = {}
        self._closers: list[Callable[[], Awaitable[None]]] = []

    # -- registering ------------------------------------------------------------
    def register(self, tool: Tool) -> Tool:
        if tool.name in self._tools:
            raise BadInput(f"a tool named '{tool.name}' is already registered ({self._tools[tool.name].source})")
        if tool.parameters.get("type", "object") != "object":
            raise BadInput(f"tool '{tool.name}': the arguments schema must be an object")
        self._tools[tool.name] = tool
        return tool

    def function(
        self, name: str, description: str, parameters: dict[str, Any], *, hint: str | None = None, source: str = "builtin",
        alike: str | None = None, rule: Callable[[str], dict[str, Any] | None] | None = None,
    ) -> Callable[[ToolFn], ToolFn]:
        """Decorator: ``@registry.function("name", "what it does", {...schema...})``."""

        def wrap(fn: ToolFn) -> ToolFn:
            self.register(Tool(name, description, parameters, fn, hint=hint, source=source, alike=alike, rule=rule))
            return fn

        return wrap

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(closer)

    def load_plugins(self) -> None:
        """Every entry point of the group ``shoal.tools`` is a ``register(registry)`` function."""
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            before = set(self._tools)
            try:
                ep.load()(self)
            except Exception as exc:  # one broken plugin must not stop the swarm
                self.plugin_errors[ep.name] = f"{type(exc).__name__}: {exc}"
                log.warning("tool plugin %s did not load: %s", ep.name, exc)
                continue
            for name in set(self._tools) - before:
                if self._tools[name].source == "builtin":
                    self._tools[name].source = f"plugin:{ep.name}"

    async def aclose(self) -> None:
        for closer in reversed(self._closers):
            try:
                await closer()
            except Exception:
                log.debug("closing a tool source failed", exc_info=True)
        self._closers.clear()

    # -- looking up -------------------------------------------------------------
    def enabled(self, name: str) -> bool:
        return name in self._tools and permits(self.config.enabled, name)

    def get(self, name: str) -> Tool:
        if not self.enabled(name):
            raise NotFound(f"no tool named '{name}'", hint="GET /api/tools lists the tools; [tools] enabled in shoal.toml")
        return self._tools[name]

    def tools(self, allow: Iterable[str] | None = None) -> list[Tool]:
        """The enabled tools, only those ``allow`` permits when given."""
        allow = list(allow) if allow is not None else None
        return [t for n, t in sorted(self._tools.items()) if self.enabled(n) and (allow is None or permits(allow, n))]

    # -- calling ----------------------------------------------------------------
    async def call(self, name: str, arguments: Any, ctx: ToolContext, *, allow: Iterable[str] | None) -> ToolOutcome:
        """Run one tool for ``ctx`` if ``allow`` permits it (None: the caller checked, e.g. a user's own MCP call).

        Every call and its result are events of ``ctx.conversation`` when
        ``ctx.emit`` is set. Invalid arguments never reach the tool.
        """
        call_id = new_id()
        await self._record_call(call_id, name, arguments, ctx)
        outcome = await self._run(call_id, name, arguments, ctx, allow)
        return await self._record_result(outcome, ctx)

    async def dropped(self, name: str, arguments: Any, ctx: ToolContext, problem: str) -> ToolOutcome:
        """A call the model could not write validly (retried, then dropped): on record as ``invalid``; nothing ran."""
        call_id = new_id()
        await self._record_call(call_id, name, arguments, ctx)
        return await self._record_result(ToolOutcome(call_id, name, "invalid", error=problem), ctx)

    async def _record_call(self, call_id: str, name: str, arguments: Any, ctx: ToolContext) -> None:
        from shoal.runtime.messages import ToolCall

        if ctx.emit is not None and ctx.conversation:
            args = arguments if isinstance(arguments, dict) else {}
            await ctx.emit(ToolCall(conversation=ctx.conversation, turn=ctx.turn, call_id=call_id, tool=name, arguments=args))

    async def _record_result(self, outcome: ToolOutcome, ctx: ToolContext) -> ToolOutcome:
        from shoal.runtime.messages import ToolResult

        self.stats[outcome.status] += 1
        if ctx.emit is not None and ctx.conversation:
            await ctx.emit(
                ToolResult(
                    conversation=ctx.conversation, turn=ctx.turn, call_id=outcome.call_id, tool=outcome.tool,
                    status=outcome.status, result=outcome.result, error=outcome.error,  # type: ignore[arg-type]
                )
            )
        return outcome

    async def _run(self, call_id: str, name: str, arguments: Any, ctx: ToolContext, allow: Iterable[str] | None) -> ToolOutcome:
        if not self.enabled(name):
            return ToolOutcome(call_id, name, "unknown", error=f"no tool named '{name}'")
        if allow is not None and not permits(allow, name):
            return ToolOutcome(call_id, name, "refused", error=f"'{ctx.caller or 'this bot'}' may not use the tool '{name}'")
        tool = self._tools[name]
        problem = "the arguments must be a JSON object" if not isinstance(arguments, dict) else schema_error(tool.parameters, arguments)
        if problem:
            return ToolOutcome(call_id, name, "invalid", error=f"invalid arguments for '{name}': {problem}")
        try:
            value = await asyncio.wait_for(tool.fn(arguments, ctx), timeout=self.config.timeout)
        except asyncio.TimeoutError:
            return ToolOutcome(call_id, name, "timeout", error=f"the tool '{name}' took longer than {self.config.timeout:g} s")
        except PermissionDenied as exc:
            return ToolOutcome(call_id, name, "refused", error=exc.message)
        except ShoalError as exc:
            return ToolOutcome(call_id, name, "error", error=exc.message)
        except Exception as exc:  # a tool's bug is its outcome, not the bot's crash
            log.warning("tool %s raised", name, exc_info=True)
            return ToolOutcome(call_id, name, "error", error=f"the tool '{name}' failed: {type(exc).__name__}: {exc}")
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        limit = self.config.max_result_chars
        if len(text) > limit:
            text = text[:limit] + "…"
        return ToolOutcome(call_id, name, "ok", result=text, value=value)


def build_registry(config: ToolsConfig | None = None) -> ToolRegistry:
    """The built-ins, then the plugins (when ``[tools] plugins``); MCP servers join in ``tools.mcp.connect``."""
    from shoal.tools import builtin

    registry = ToolRegistry(config)
    builtin.register(registry)
    if registry.config.plugins:
        registry.load_plugins()
    return registry
