"""The ``[ulm]`` section of shoal.toml: how µLMs train here and which thinkers solve with one."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class UlmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threads: int = Field(default=0, ge=0, description="torch threads for training and search; 0 = the CPU budget")
    nice: int = Field(default=15, ge=0, le=19, description="niceness of `shoal ulm train`")
    solver_run: str | None = Field(
        default=None, description="a harness-trained µLM run (name under $SHOAL_HOME/ulm/runs, or a folder)"
    )
    solver_bots: list[str] = Field(
        default_factory=list, description="thinkers that hand turns the harness recognises (12*34, sort 3 1 2) to the µLM"
    )
    samples: int = Field(default=8, ge=1, le=64, description="µLM samples per task (best-of-N, scored by the verifier)")
    temperature: float = Field(default=1.0, gt=0, le=2.0)
    max_new: int = Field(default=64, ge=8, le=512, description="token budget per sample")
    users: list[str] = Field(
        default_factory=list,
        description='who may start µLM training runs from the web UI besides admins (user names, or "users": anyone)',
    )
