"""The ``[learn]`` section of shoal.toml: continuous learning in the background (docs/learn.md).

Only pydantic is imported here: shoal.config imports this module, and ``import shoal`` must stay light.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LearnConfig(BaseModel):
    """When `shoal up` trains a bot's adapter by itself, on whose verdicts, and how hard."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="train in the background when enough new verdicts arrive")
    users: list[str] = Field(
        default_factory=list,
        description="whose ratings and corrections train the adapters (user names). An adapter is served to "
        "everyone who chats with the bot, so list only people who accept that",
    )
    bots: list[str] = Field(default_factory=list, description="bots to train (empty: the conversation bot)")
    after_verdicts: int = Field(default=20, ge=1, le=100_000, description="a run after this many new ratings or corrections")
    every_hours: float = Field(
        default=0.0, ge=0.0, le=24 * 365, description="also a run this often when there is any new verdict (0: off)"
    )
    check_interval: float = Field(default=30.0, gt=0.0, le=3600.0, description="seconds between looks for new verdicts")
    promote: bool = Field(default=True, description="serve a candidate that beats the served adapter (validation, canary)")
    canary_margin: float = Field(default=0.10, ge=0.0, le=10.0, description="canary loss rise allowed (nats/token)")
    # the run itself (the same knobs as `shoal learn train`)
    steps: int = Field(default=0, ge=0, le=1_000_000, description="optimiser steps (0: `epochs` over the data)")
    epochs: float = Field(default=3.0, gt=0.0, le=1000.0)
    rank: int = Field(default=8, ge=1, le=256)
    lr: float = Field(default=1e-3, gt=0.0, le=1.0)
    batch: int = Field(default=4, ge=1, le=256, description="examples per step")
    max_tokens: int = Field(default=384, ge=16, le=8192, description="longest example (prompt + target) in tokens")
    threads: int = Field(default=1, ge=1, le=64, description="torch threads (the chat keeps the other cores)")
    window: int = Field(default=6, ge=1, le=64, description="messages of history before each reply")
    val_fraction: float = Field(default=0.2, ge=0.0, le=0.9, description="share of conversations held out")

    @model_validator(mode="after")
    def _check(self) -> "LearnConfig":
        if self.enabled and not self.users:
            raise ValueError(
                "learn.enabled needs learn.users: the people whose ratings train the adapter everyone is served, "
                'e.g. users = ["ana"]'
            )
        return self
