"""The tools shoal ships; they register the way plugins do (``register(registry)``).

- ``calculator``: arithmetic through a safe AST evaluator (no names but a few
  functions and constants, bounded powers, no attribute access, no calls of
  anything else);
- ``time``: the current date and time in a time zone;
- ``memory_search``: the asking user's memories (never anyone else's);
- ``conversation_lookup``: words in the asking user's own conversations;
- ``webhook``: an HTTP POST to a URL on ``[tools] webhook_urls`` only.
"""

from __future__ import annotations

import ast
import datetime as dt
import math
import operator
import re
from typing import Any
from urllib.parse import urlsplit

from shoal.errors import BadInput, PermissionDenied, ShoalError
from shoal.tools.registry import ToolContext, ToolRegistry

# -- calculator -------------------------------------------------------------------
_BIN = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max, "log": math.log, "log10": math.log10,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "floor": math.floor, "ceil": math.ceil,
}
_CONSTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 1e300


def evaluate(expression: str) -> float | int:
    """The value of an arithmetic expression; BadInput for anything else (names, attributes, huge powers)."""
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not text or len(text) > 500:
        raise BadInput("the expression must be 1 to 500 characters", hint="e.g. (3 + 4) * 12 or sqrt(2)")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise BadInput(f"not an arithmetic expression: {expression!r}", hint="use numbers, + - * / ** %, ( ) and sqrt()") from exc
    return _eval(tree.body)


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > MAX_EXPONENT or abs(left) > 1e6 and abs(right) > 10):
            raise BadInput("that power is too large to compute")
        try:
            value = _BIN[type(node.op)](left, right)
        except ZeroDivisionError as exc:
            raise BadInput("division by zero") from exc
        if isinstance(value, complex) or abs(value) > MAX_MAGNITUDE:
            raise BadInput("the result is out of range")
        return value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTS:
        return _CONSTS[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
        args = [_eval(a) for a in node.args]
        try:
            return _FUNCS[node.func.id](*args)
        except (ValueError, TypeError) as exc:
            raise BadInput(f"{node.func.id}: {exc}") from exc
    raise BadInput(
        f"'{ast.unparse(node)}' is not allowed in a calculation",
        hint=f"numbers, + - * / // % **, parentheses, {', '.join(sorted(_FUNCS))}, {', '.join(sorted(_CONSTS))}",
    )


# the rule that reads a sum from a message (calling.ruled): words to operators, then the longest arithmetic span
_WORDS = [
    (r"\bmultiplied by\b|\btimes\b|(?<=\d)\s*[x×]\s*(?=\d)", " * "),
    (r"\bdivided by\b|÷", " / "),
    (r"\bplus\b", " + "),
    (r"\bminus\b", " - "),
    (r"\bto the power of\b", " ** "),
    (r"\bsquared\b", " ** 2"),
    (r"\bsquare root of\s*(\d+(?:\.\d+)?)", r"sqrt(\1)"),
]
_SPAN = re.compile(r"(?:sqrt)?[(\s]*-?\d[\d.\s+\-*/%^()]*[\d)]")


def arithmetic_in(text: str) -> dict[str, Any] | None:
    """The calculator's arguments for the sum in ``text`` ("What is 17 times 23?" → ``17 * 23``); None: no sum it can compute."""
    t = text.lower()
    for pattern, repl in _WORDS:
        t = re.sub(pattern, repl, t)
    spans = [" ".join(m.group().split()) for m in _SPAN.finditer(t)]
    spans = [s for s in spans if re.search(r"[-+*/%^]", s[1:]) or s.startswith("sqrt")]  # an operator, not a sign
    if not spans:
        return None
    expression = max(spans, key=len)
    while expression.count(")") > expression.count("(") and expression.endswith(")"):
        expression = expression[:-1].rstrip()  # "(17 * 23)" read from "(what is 17 * 23)"
    try:
        evaluate(expression)
    except BadInput:
        return None  # a date (2024-05-01), a phone number: not a sum
    return {"expression": expression}


async def calculator(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    value = evaluate(args["expression"])
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return {"expression": args["expression"], "result": value}


# -- time -------------------------------------------------------------------------
async def current_time(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = args.get("timezone") or "UTC"
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadInput(f"unknown time zone '{name}'", hint="an IANA name such as Europe/Lisbon or UTC") from exc
    now = dt.datetime.now(zone)
    return {"timezone": name, "iso": now.isoformat(timespec="seconds"), "date": now.date().isoformat(),
            "time": now.strftime("%H:%M"), "weekday": now.strftime("%A")}


# -- the user's own data --------------------------------------------------------------
async def memory_search(args: dict[str, Any], ctx: ToolContext) -> list[dict[str, Any]]:
    if ctx.memories is None:
        raise ShoalError("memory is not available here")
    found = await ctx.memories.search(ctx.user_id, args["query"], limit=int(args.get("limit", 5)), wait_for_vectors=False)
    return [{"id": m.id, "kind": m.kind, "text": m.text} for m in found]


async def conversation_lookup(args: dict[str, Any], ctx: ToolContext) -> list[dict[str, Any]]:
    if ctx.conversations is None:
        raise ShoalError("conversations are not available here")
    words = [w for w in args["query"].split() if w][:8]
    limit = int(args.get("limit", 5))
    like = " AND ".join("m.content LIKE ? ESCAPE '\\'" for _ in words) or "1"
    params = [f"%{w.replace(chr(92), chr(92) * 2).replace('%', chr(92) + '%').replace('_', chr(92) + '_')}%" for w in words]
    sql = (
        "SELECT m.id, m.conversation_id, m.role, m.content, m.created_at FROM messages m JOIN conversations c"
        " ON c.id = m.conversation_id WHERE (c.user_id = ? OR c.id IN (SELECT conversation_id FROM room_members"
        f" WHERE user_id = ?)) AND {like} ORDER BY m.id DESC LIMIT ?"
    )
    rows = await ctx.conversations.db.read(lambda c: c.execute(sql, (ctx.user_id, ctx.user_id, *params, limit)).fetchall())
    return [
        {"message": r["id"], "conversation": r["conversation_id"], "role": r["role"], "text": r["content"][:400]}
        for r in rows
    ]


# -- webhook ------------------------------------------------------------------------
def url_allowed(url: str, allowed: list[str]) -> bool:
    """Same scheme, host and port as an allowed URL, and a path under its path (no prefix tricks)."""
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError:
        return False
    if u.scheme not in ("http", "https") or not u.hostname or u.username or u.password:
        return False
    for a in allowed:
        w = urlsplit(a)
        if (u.scheme, u.hostname, port or _default_port(u.scheme)) != (w.scheme, w.hostname, w.port or _default_port(w.scheme)):
            continue
        base = w.path.rstrip("/")
        if u.path == base or u.path.startswith(base + "/") or not base:
            return True
    return False


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


async def webhook(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    import httpx

    url = args["url"]
    if not url_allowed(url, ctx.config.webhook_urls):
        raise PermissionDenied(f"the URL {url} is not on the allow-list", hint="add it to [tools] webhook_urls in shoal.toml")
    try:
        # no redirects: a redirect could leave the allow-list
        async with httpx.AsyncClient(timeout=ctx.config.timeout, follow_redirects=False) as client:
            r = await client.post(url, json={"payload": args.get("payload", {}), "caller": ctx.caller})
    except httpx.HTTPError as exc:
        raise ShoalError(f"the webhook {url} failed: {type(exc).__name__}: {exc}") from exc
    return {"status": r.status_code, "body": r.text[:1000]}


def _search_args(max_query: int) -> dict[str, Any]:
    """The arguments of a search tool: a query of 1 to ``max_query`` characters and an optional limit of 1 to 20."""
    return {"type": "object", "properties": {"query": {"type": "string", "minLength": 1, "maxLength": max_query},
                                             "limit": {"type": "integer", "minimum": 1, "maximum": 20}},
            "required": ["query"], "additionalProperties": False}


def register(registry: ToolRegistry) -> None:
    registry.function(
        "calculator", "Evaluate an arithmetic expression, e.g. (3 + 4) * 12 or sqrt(2).",
        # the pattern is in the grammar too: no quote or brace can enter, so the string must end where the sum does
        {"type": "object", "properties": {"expression": {"type": "string", "minLength": 1, "maxLength": 200,
                                                         "pattern": "^[0-9a-z+*/%^()., -]+$"}},
         "required": ["expression"], "additionalProperties": False},
        hint=r"\d\s*[-+*/x×÷^%]\s*\d|\d\s+(times|plus|minus|divided by|multiplied by|to the power of)\s+\d"
             r"|\b(calculate|compute|how much is|what is \d+|sqrt|square root|percent)\b",
        alike=r"calculat|arithmetic|\bmath|\bexpression|\bcompute|\bevaluat|\bmultipl",
        rule=arithmetic_in,
    )(calculator)
    registry.function(
        "time", "The current date and time (optionally in an IANA time zone such as Europe/Lisbon).",
        {"type": "object", "properties": {"timezone": {"type": "string", "maxLength": 64}}, "additionalProperties": False},
        hint=r"\b(what time|the time|today|date|what day|weekday|clock)\b",
    )(current_time)
    registry.function(
        "memory_search", "Search what shoal remembers about the person asking.", _search_args(500),
        hint=r"\b(remember|recall|do you know|my name|about me)\b",
    )(memory_search)
    registry.function(
        "conversation_lookup", "Find messages containing these words in the asking person's own conversations.",
        _search_args(200),
        hint=r"\b(we talked|did i (say|tell|mention)|earlier|last time|i said)\b",
    )(conversation_lookup)
    registry.function(
        "webhook", "POST a JSON payload to an allow-listed URL (e.g. a home automation hook).",
        {"type": "object", "properties": {"url": {"type": "string", "maxLength": 500}, "payload": {"type": "object"}},
         "required": ["url"], "additionalProperties": False},
        hint=r"\b(webhook|trigger|turn (on|off)|notify)\b",
    )(webhook)
