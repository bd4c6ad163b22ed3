"""Training recipes: TOML files (``shoal ulm train CONFIG``) read into a strict, typed object.

A recipe names its data, its tokenizer, the model's shape and the loop's
settings. Unknown keys are errors (with file and field), not silently ignored:
a typo in ``n_layers`` must not train the wrong model for an hour. Built-in
recipes live in ``shoal/ulm/configs/`` and are found by name.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shoal.errors import ConfigError

CONFIGS = Path(__file__).parent / "configs"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSection(_Strict):
    corpus: str = Field(
        default="shakespeare",
        description='"shakespeare", "harness", "conversations" (a person\'s own, with consent), or a .txt file / folder of them',
    )
    #: corpus = "conversations": whose (a user name; "" = the CLI's own person, "local"); from the web: always the run's owner
    user: str = ""
    tokenizer: Literal["bpe", "char"] = "bpe"
    vocab_size: int = Field(default=1024, ge=258, le=65535, description="BPE vocabulary (char: always 257)")
    val_fraction: float = Field(default=0.1, gt=0, lt=0.5)
    #: corpus = "harness": which environments and levels, how many tasks, the seed
    envs: list[str] = Field(default_factory=lambda: ["arith", "lists", "chain"])
    levels: list[int] = Field(default_factory=lambda: [1, 2, 3])
    n_tasks: int = Field(default=20_000, ge=10)
    seed: int = 0
    #: cap on the corpus size in characters (0 = all), for quick runs
    max_chars: int = Field(default=0, ge=0)


class ModelSection(_Strict):
    n_layer: int = Field(default=4, ge=1, le=64)
    n_head: int = Field(default=4, ge=1, le=64)
    n_embd: int = Field(default=128, ge=8, le=4096)
    block_size: int = Field(default=128, ge=8, le=8192)
    ffn_hidden: int = Field(default=0, ge=0, description="0 = llama's 8/3 rule")
    dropout: float = Field(default=0.0, ge=0, lt=1)
    rope_theta: float = Field(default=10000.0, gt=0)


class TrainSection(_Strict):
    iters: int = Field(default=2000, ge=1)
    batch_size: int = Field(default=12, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    min_lr: float = Field(default=1e-4, ge=0)
    warmup: int = Field(default=100, ge=0)
    weight_decay: float = Field(default=0.1, ge=0)
    grad_clip: float = Field(default=1.0, ge=0)
    eval_every: int = Field(default=250, ge=1)
    eval_iters: int = Field(default=20, ge=1)
    ckpt_every: int = Field(default=250, ge=1)
    seed: int = 1337
    threads: int = Field(default=0, ge=0, description="torch threads; 0 = what the CPU budget allows")


class Recipe(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    data: DataSection = Field(default_factory=DataSection)
    model: ModelSection = Field(default_factory=ModelSection)
    train: TrainSection = Field(default_factory=TrainSection)


def builtin_recipes() -> list[str]:
    return sorted(p.stem for p in CONFIGS.glob("*.toml"))


def load_recipe(spec: str | Path) -> Recipe:
    """A recipe from a TOML path, or a built-in one by name (``smoke``, ``char``, ``harness``)."""
    path = Path(spec)
    if not path.suffix and not path.exists():
        path = CONFIGS / f"{spec}.toml"
    if not path.is_file():
        raise ConfigError(
            f"no recipe '{spec}'",
            hint=f"give a TOML file, or one of the built-ins: {', '.join(builtin_recipes())}",
        )
    return parse_recipe(path.read_text(), str(path))


def parse_recipe(text: str, source: str = "<string>") -> Recipe:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=source) from exc
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        what = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise ConfigError(
            what, path=source, field=field, hint="see docs/ulm.md for every recipe key"
        ) from exc
