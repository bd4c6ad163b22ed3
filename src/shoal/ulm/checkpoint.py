"""Checkpoints = weights (``ckpt.pt``) + JSON metadata (``ckpt.json``) + the tokenizer, in one run folder.

    runs/<name>/
      recipe.toml      the recipe the run was started with
      tokenizer.json   the tokenizer (its fingerprint is in ckpt.json)
      ckpt.pt          model + optimiser state + RNG (torch.save, written atomically)
      ckpt.json        iteration, model shape, losses, tokens seen, timings
      loss.png         the curves
      model.gguf       after `shoal ulm export`

Writes go to a temporary file and are renamed, so a kill -9 leaves the last
complete checkpoint, never half of one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from shoal.errors import BadInput, NotFound
from shoal.ulm.model import ULM, ModelConfig
from shoal.ulm.tokenizer import ULMTokenizer


def runs_dir(home: Path) -> Path:
    return home / "ulm" / "runs"


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(run: Path, model: ULM, opt: torch.optim.Optimizer | None, meta: dict[str, Any], rng: torch.Generator) -> None:
    import io

    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict() if opt else None, "rng": rng.get_state()}, buf)
    # weights first, metadata second: a JSON always describes weights that are on disk
    atomic_write(run / "ckpt.pt", buf.getvalue())
    atomic_write(run / "ckpt.json", json.dumps(meta, indent=1).encode())


def read_meta(run: Path) -> dict[str, Any]:
    path = run / "ckpt.json"
    if not path.is_file():
        raise NotFound(f"no checkpoint in {run}", hint="train one with `shoal ulm train CONFIG`; `shoal ulm list` shows runs")
    try:
        meta = json.loads(path.read_text())
        ModelConfig.from_dict(meta["model"])
        return meta
    except (ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"{path} is corrupt ({exc})", hint="train the run again, or restore the file") from exc


@dataclass
class Loaded:
    run: Path
    model: ULM
    tokenizer: ULMTokenizer
    meta: dict[str, Any]
    state: dict[str, Any]


def load(run: Path, *, tokenizer: Path | None = None) -> Loaded:
    """A trained run, checked: the weights load into the recorded shape and the tokenizer is the one trained with."""
    meta = read_meta(run)
    tok = ULMTokenizer.load(tokenizer or run / "tokenizer.json")
    if tok.fingerprint != meta.get("tokenizer"):
        raise BadInput(
            f"the tokenizer {tokenizer or run / 'tokenizer.json'} does not match the checkpoint in {run} "
            f"(fingerprint {tok.fingerprint}, checkpoint expects {meta.get('tokenizer')})",
            hint="use the tokenizer.json saved with the run",
        )
    cfg = ModelConfig.from_dict(meta["model"])
    model = ULM(cfg)
    try:
        state = torch.load(run / "ckpt.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
    except FileNotFoundError as exc:
        raise NotFound(f"{run / 'ckpt.pt'} is missing", hint="train the run again") from exc
    except Exception as exc:  # pickle/zip errors, shape mismatches: all mean the file is not this model
        raise BadInput(f"{run / 'ckpt.pt'} is corrupt or not this model ({str(exc)[:200]})", hint="train the run again") from exc
    model.eval()
    return Loaded(run, model, tok, meta, state)


def resolve(home: Path, name_or_path: str) -> Path:
    """A run folder from a name (under $SHOAL_HOME/ulm/runs) or a path."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    run = runs_dir(home) / name_or_path
    if not run.is_dir():
        raise NotFound(f"no µLM run named '{name_or_path}'", hint="`shoal ulm list` shows the runs")
    return run
