"""``[mesh]`` in shoal.toml: which mesh carries the bots' messages, and how to reach NATS.

Only pydantic is imported here: shoal.config imports this module and
``import shoal`` must stay light. See docs/mesh.md.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class MeshConfig(BaseModel):
    """The mesh: ``inprocess`` (default, one process) or ``nats`` (bots in workers on other processes/machines)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["inprocess", "nats"] = Field(default="inprocess", description="inprocess (one process) or nats")
    url: str = Field(default="nats://127.0.0.1:4222", description="the NATS server (nats:// or tls://)")
    remote: list[str] = Field(
        default_factory=list,
        description="bots that run in workers (`shoal worker --bots ...`): the server does not start them",
    )
    fallback: Literal["inprocess", "missing"] = Field(
        default="missing",
        description="when the last worker of a bot dies: run it in the server (inprocess) or report it missing",
    )
    heartbeat: float = Field(default=1.0, gt=0, le=60, description="seconds between a worker's heartbeats")
    missed: int = Field(default=5, ge=1, le=100, description="heartbeats missed before a worker is dead")
    data_timeout: float = Field(default=30.0, gt=0, description="seconds a worker waits for the server's data service")
    durable: bool = Field(
        default=True, description="user turns and routes go through a JetStream stream with durable consumers"
    )
    ack_wait: float = Field(
        default=30.0, ge=1, le=3600,
        description="seconds JetStream waits for a route or user turn to be handled before it delivers it again "
        "(a worker killed mid-thought: its routes go to the next worker then; live ones report progress every third)",
    )
    stream: str = Field(default="SHOAL_CONV", pattern=r"^[A-Za-z0-9_-]+$", description="the JetStream stream's name")
    # -- credentials (any one, or none) and TLS ---------------------------------------
    user: str = Field(default="", description="NATS user (with password)")
    password: str = Field(default="", description="NATS password (or set SHOAL_NATS_PASSWORD)")
    token: str = Field(default="", description="NATS token (or set SHOAL_NATS_TOKEN)")
    nkey_seed: str = Field(default="", description="path of an nkey seed file (needs the nkeys package)")
    creds: str = Field(default="", description="path of a NATS .creds file (JWT + nkey)")
    tls_ca: str = Field(default="", description="CA file that signed the NATS server's certificate")
    tls_cert: str = Field(default="", description="client certificate (mutual TLS)")
    tls_key: str = Field(default="", description="client key (mutual TLS)")

    @model_validator(mode="after")
    def _one_credential(self) -> "MeshConfig":
        given = [name for name in ("user", "token", "nkey_seed", "creds") if getattr(self, name)]
        if len(given) > 1:
            raise ValueError(f"give one NATS credential, not {' and '.join(given)}")
        return self

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        for part in v.split(","):
            if not re.match(r"^(nats|tls|ws|wss)://[^\s/]+/?$", part.strip()):
                raise ValueError(f"url must look like nats://host:4222 (got {v!r})")
        return v

    def connect_options(self, name: str) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect`` (servers, credentials, TLS, reconnects)."""
        opts: dict[str, Any] = {
            "servers": [u.strip() for u in self.url.split(",")],
            "name": name,
            "connect_timeout": 3,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            "allow_reconnect": True,
        }
        password = self.password or os.environ.get("SHOAL_NATS_PASSWORD", "")
        token = self.token or os.environ.get("SHOAL_NATS_TOKEN", "")
        if self.user:
            opts["user"], opts["password"] = self.user, password
        if token:
            opts["token"] = token
        if self.nkey_seed:
            opts["nkeys_seed"] = str(user_seed_file(self.nkey_seed, "nkey_seed"))
        if self.creds:
            opts["user_credentials"] = str(user_seed_file(self.creds, "creds"))
        if self.tls_ca or self.tls_cert or self.url.startswith("tls://"):
            import ssl

            ctx = ssl.create_default_context(cafile=self.tls_ca or None)
            if self.tls_cert:
                ctx.load_cert_chain(self.tls_cert, self.tls_key or None)
            opts["tls"] = ctx
            opts["tls_hostname"] = None
        return opts


def user_seed_file(path: str, field: str) -> Path:
    """``path`` (an nkey seed file, or a .creds file with ``field="creds"``) if it holds a NATS user seed.

    nats-py reads these files only while it connects and fails there with a bare
    ``nkeys: invalid seed``; checked here, the error names the file and the setting.
    """
    import nkeys

    from shoal.errors import ConfigError

    p = Path(path).expanduser()
    what = "a NATS .creds file" if field == "creds" else "an nkey seed file"
    hint = (
        "`nsc generate creds` writes one (a user JWT and its seed)" if field == "creds"
        else "a user seed is one line starting with SU (`nk -gen user`, or `nsc` for operator setups)"
    )
    try:
        text = p.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} at {p}: {getattr(exc, 'strerror', None) or exc}", field=f"mesh.{field}", hint=hint) from exc
    seed = text
    if field == "creds":
        m = re.search(r"BEGIN NATS USER JWT-+\s+\S+\s+-+END NATS USER JWT.*?BEGIN USER NKEY SEED-+\s+(\S+)\s+-+END", text, re.S)
        if m is None:
            raise ConfigError(f"{p} is not {what}: no user JWT and seed blocks", field=f"mesh.{field}", hint=hint)
        seed = m.group(1)
    try:
        prefix, _ = nkeys.decode_seed(bytearray(seed.encode()))
    except nkeys.NkeysError as exc:
        raise ConfigError(f"{p} does not hold an nkey seed ({exc})", field=f"mesh.{field}", hint=hint) from exc
    if prefix != nkeys.PREFIX_BYTE_USER:
        raise ConfigError(f"the seed in {p} is not a user's (it starts with {seed[:2]!r}, not 'SU')", field=f"mesh.{field}", hint=hint)
    return p
