"""Tool calls on small models: the choice is JSON-schema-constrained, then validated.

A 135M model cannot be trusted to write a tool call, so it is not asked to
write free text: ``choice_schema`` builds one JSON schema whose alternatives
are ``{"tool": <name>, "arguments": <that tool's schema>}`` for the tools the
bot may use (plus ``{"tool": "none"}``), the engine compiles it to a grammar,
and what comes out is parsed and validated against the tool's own schema
(which can say more than a grammar enforces). Invalid output is retried once
with the error fed back, then dropped and counted (``CallStats``); it never
reaches the tool. Rules before the model (DESIGN.md §5): a tool is offered
only when its ``hint`` matches the message.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from shoal.backends.base import Backend, generate
from shoal.errors import BackendError, BadInput, ShoalError
from shoal.tools.registry import Tool, ToolContext, ToolOutcome, ToolRegistry, schema_error
from shoal.types import ChatMessage, GenerateRequest, Priority, SamplingParams

if TYPE_CHECKING:
    from shoal.runtime.bot import Bot

#: counts of every decision made by a model: chosen, none, invalid (retried), dropped
STATS: Counter[str] = Counter()

_GRAMMAR_ONLY_DROP = ("maxLength", "maxItems", "format")


def _for_grammar(schema: Any) -> Any:
    """The schema without limits a grammar enforces badly (deep length rules); validation still checks them."""
    if isinstance(schema, dict):
        out = {k: _for_grammar(v) for k, v in schema.items() if k not in _GRAMMAR_ONLY_DROP}
        if out.get("type") == "object" and "properties" in out:
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [_for_grammar(v) for v in schema]
    return schema


def choice_schema(tools: Iterable[Tool], *, allow_none: bool = True) -> dict[str, Any]:
    """One schema whose alternatives are the calls of ``tools`` (and "none")."""
    options: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"tool": {"const": t.name}, "arguments": _for_grammar(copy.deepcopy(t.parameters))},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    if allow_none:
        options.append({"type": "object", "properties": {"tool": {"const": "none"}}, "required": ["tool"], "additionalProperties": False})
    return options[0] if len(options) == 1 else {"anyOf": options}


def choice_grammar(schema: dict[str, Any]) -> str:
    """llama.cpp's grammar for ``schema``, with strings that cannot hold raw control characters.

    The converter's string rule lets a newline into a string, and a small model
    then forgets the closing quote and rambles on inside it; JSON forbids
    those characters anyway. Backends without grammars use ``json_schema``.
    """
    from shoal.engine.scheduler import schema_to_grammar

    try:
        grammar = schema_to_grammar(schema)
    except BackendError as exc:  # a schema llama.cpp's converter cannot express: the caller's to fix
        raise BadInput(f"cannot constrain output to this schema: {exc.message}", hint="simplify the tool's parameters") from exc
    return grammar.replace('char ::= [^"\\\\]', 'char ::= [^"\\\\\\x7F\\x00-\\x1F]')


@dataclass
class Choice:
    tool: str | None  # None: no tool
    arguments: dict[str, Any]
    #: tokens spent on the choice, every attempt included (prompt, completion)
    usage: tuple[int, int] = (0, 0)


def parse_choice(text: str, tools: dict[str, Tool]) -> tuple[Choice | None, str | None]:
    """The choice written in ``text`` or why it is not one."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg})"
    if not isinstance(data, dict) or not isinstance(data.get("tool"), str):
        return None, 'not an object with a "tool" name'
    name = data["tool"]
    if name == "none":
        return Choice(None, {}), None
    if name not in tools:
        return None, f"unknown tool '{name}' (tools: {', '.join(sorted(tools))})"
    args = data.get("arguments", {})
    problem = "arguments must be an object" if not isinstance(args, dict) else schema_error(tools[name].parameters, args)
    if problem:
        return None, f"invalid arguments for {name}: {problem}"
    return Choice(name, args), None


def tool_prompt(tools: Iterable[Tool], *, allow_none: bool = True) -> str:
    lines = ["You can call one tool. Tools:"]
    for t in tools:
        props = t.parameters.get("properties", {})
        args = ", ".join(f"{k}: {v.get('type', 'any')}" for k, v in props.items())
        lines.append(f"- {t.name}({args}): {t.description}")
    example = next(iter(tools), None)
    if example is not None and example.name == "calculator":
        lines.append('Example: "what is 2 plus 3?" -> {"tool": "calculator", "arguments": {"expression": "2 + 3"}}')
    lines.append('Answer with JSON only: {"tool": "<name>", "arguments": {...}}' + (' or {"tool": "none"}.' if allow_none else "."))
    return "\n".join(lines)


def hinted(tools: Iterable[Tool], text: str) -> list[Tool]:
    """The tools whose hint matches ``text`` (a tool without a hint is never offered by rule)."""
    return [t for t in tools if t.hint and re.search(t.hint, text, re.IGNORECASE)]


def ruled(tools: list[Tool], text: str, known: Iterable[Tool]) -> tuple[list[Tool], Choice | None]:
    """What the rules say of a client's functions for ``text``: the ones wanted, and the call itself when a rule reads it.

    A client's function is *alike* a known tool when its name is the tool's or
    its name and description match the tool's ``alike``; it is wanted when
    that tool's ``hint`` matches ``text`` and its ``rule`` (if it has one)
    reads arguments from it. When those fit the function's schema (as they
    are, or as its one string property), that is the call: no model writes it.
    """
    wanted: list[Tool] = []
    call: Choice | None = None
    for k in known:
        if not (k.alike and k.hint and re.search(k.hint, text, re.IGNORECASE)):
            continue
        args = k.rule(text) if k.rule is not None else None
        if k.rule is not None and args is None:
            continue  # the hint matched, but its rule reads no call in the text (a date, not a sum): the model's choice
        for t in tools:
            if t in wanted or not (t.name == k.name or re.search(k.alike, f"{t.name} {t.description}", re.IGNORECASE)):
                continue
            wanted.append(t)
            if call is None and args is not None and (fitted := _fit(args, t.parameters)) is not None:
                call = Choice(t.name, fitted)
    return wanted, call


def _fit(args: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any] | None:
    """``args`` for a function with ``schema``: as they are, or their one value as the function's one string property."""
    props = schema.get("properties", {})
    if set(args) <= set(props) and schema_error(schema, args) is None:
        return args
    strings = [k for k, v in props.items() if isinstance(v, dict) and v.get("type") == "string"]
    if len(args) != 1 or len(strings) != 1 or len(props) != 1:
        return None
    fitted = {strings[0]: next(iter(args.values()))}
    return fitted if schema_error(schema, fitted) is None else None


async def choose(
    backend: Backend,
    tools: list[Tool],
    messages: list[ChatMessage],
    *,
    model: str | None = None,
    allow_none: bool = True,
    constrain: bool = True,
    priority: Priority = Priority.PRIMARY,
    owner: str = "",
    max_tokens: int = 64,
    retries: int = 1,
    stats: Counter[str] | None = None,
    seed: int | None = None,
    attempts: list[tuple[str, str]] | None = None,
) -> Choice | None:
    """Let the model pick a tool and its arguments; None when it failed ``retries + 1`` times (dropped, counted).

    ``constrain=False`` lets the model write anything (clients that asked for
    it, and tests forcing bad output): validation still guards the tool.
    ``attempts`` collects each invalid output with what was wrong with it.
    """
    counts = STATS if stats is None else stats
    by_name = {t.name: t for t in tools}
    schema = choice_schema(tools, allow_none=allow_none) if constrain else None
    grammar = choice_grammar(schema) if schema is not None else None
    convo = [ChatMessage("system", tool_prompt(tools, allow_none=allow_none)), *[m for m in messages if m.role != "system"]]
    spent = [0, 0]
    for attempt in range(retries + 1):
        req = GenerateRequest(
            messages=list(convo),
            model=model,
            sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0 if attempt == 0 else 0.4, seed=seed),
            json_schema=schema,
            grammar=grammar,
            priority=priority,
            owner=owner,
        )
        out = await generate(backend, req)
        spent[0] += out.prompt_tokens
        spent[1] += out.completion_tokens
        text = out.text.strip()
        choice, problem = parse_choice(text, by_name)
        if choice is not None:
            counts["none" if choice.tool is None else "chosen"] += 1
            choice.usage = (spent[0], spent[1])
            return choice
        counts["invalid"] += 1
        if attempts is not None:
            attempts.append((text, problem or ""))
        convo += [ChatMessage("assistant", text[:300]), ChatMessage("user", f"That is not a valid tool call: {problem}. Answer with JSON only.")]
    counts["dropped"] += 1
    return None


async def call_tool_for(bot: "Bot", conversation: str, turn: str | None, user_id: str, text: str, *, tools: list[str] | None = None) -> ToolOutcome | None:
    """The bot picks one of the tools it may use for ``text`` and calls it; None: no tool (or the choice was dropped).

    Offered: the tools the bot may use (``tools`` narrows them further) whose
    hint matches. The registry checks the permission again on the call.
    """
    registry: ToolRegistry | None = getattr(bot.ctx, "tools", None)
    if registry is None or not bot.config.tools:
        return None
    offered = registry.tools(bot.config.tools)
    if tools is not None:
        offered = [t for t in offered if t.name in tools]
    offered = hinted(offered, text)
    if not offered:
        return None
    attempts: list[tuple[str, str]] = []
    try:
        # the rules said a tool is wanted: the model picks which and writes the arguments, not whether
        choice = await choose(
            bot.backend, offered, [ChatMessage("user", text)], model=bot.config.model, priority=bot.priority, owner=bot.name,
            allow_none=False, attempts=attempts,
        )
    except ShoalError:
        STATS["dropped"] += 1
        return None
    ctx = ToolContext(
        user_id=user_id, memories=bot.ctx.memories, conversations=bot.ctx.conversations, config=registry.config,
        conversation=conversation, turn=turn, caller=bot.name, emit=bot.emit,
    )
    if choice is None:  # dropped: on record in the headspace, and the tool never ran
        name, args = _attempted(attempts[-1][0], offered) if attempts else (offered[0].name, {})
        problem = attempts[-1][1] if attempts else "no output"
        await registry.dropped(name, args, ctx, f"the model's call was dropped after {len(attempts)} invalid tries: {problem}")
        return None
    if choice.tool is None:
        return None
    return await registry.call(choice.tool, choice.arguments, ctx, allow=bot.config.tools)


def _attempted(text: str, offered: list[Tool]) -> tuple[str, dict[str, Any]]:
    """The tool and arguments an invalid output meant, as far as it says (for the record only)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    name = data.get("tool") if isinstance(data, dict) else None
    if not isinstance(name, str) or name not in {t.name for t in offered}:
        name = offered[0].name if len(offered) == 1 else "unknown"
    args = data.get("arguments") if isinstance(data, dict) else None
    return name, args if isinstance(args, dict) else {}


def tool_template(config: Any, registry: ToolRegistry | None, text: str) -> Any:
    """An action template for ``config``'s own tool calls (the primary's), or None when no tool it may use fits ``text``."""
    if registry is None or not config.tools or not hinted(registry.tools(config.tools), text):
        return None
    return config.model_copy(update={"name": f"{config.name}-tools", "role": "action", "instruction": "", "max_running": 2})
