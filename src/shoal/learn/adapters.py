"""Versioned adapters under ``SHOAL_HOME/learn/adapters/<bot>/``: candidates, promote, roll back.

    adapters/<bot>/
        v0001/ adapter.gguf  card.json  val.jsonl  loss.png     one trained candidate
        served.json   {"current": "v0002", "history": ["", "v0001"]}   what is served, and before

A candidate becomes current only through :func:`promote`, which scores it *in
llama.cpp* against what is served now: it must lower the validation loss and
may not raise the canary loss by more than ``canary_margin``. A file that
cannot be read or loaded is refused there with a clear error, and what was
served stays served. ``rollback`` steps back through the history (the first
entry, ``""``, is the base model: exactly its logits).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.errors import BadInput, ModelError, NotFound

#: the canary loss may rise this much (nats per token) before a candidate counts as forgetting
DEFAULT_CANARY_MARGIN = 0.10


@dataclass(frozen=True)
class Decision:
    promoted: bool
    version: str
    reason: str
    candidate: dict[str, float | None]
    current: dict[str, float | None]
    served: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def adapters_dir(home: Path, bot: str) -> Path:
    return home / "learn" / "adapters" / bot


class AdapterRegistry:
    def __init__(self, home: Path, bot: str) -> None:
        self.home = home
        self.bot = bot
        self.root = adapters_dir(home, bot)

    # -- state ---------------------------------------------------------------------
    def _served(self) -> dict[str, Any]:
        path = self.root / "served.json"
        if not path.is_file():
            return {"current": "", "history": []}
        try:
            data = json.loads(path.read_text())
            return {"current": str(data.get("current", "")), "history": [str(v) for v in data.get("history", [])]}
        except ValueError as exc:
            raise ModelError(f"{path} is damaged ({exc})", hint="fix or delete it (deleting serves the base model)") from exc

    def _write_served(self, data: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "served.json.tmp"
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.root / "served.json")

    @property
    def current(self) -> str:
        """The served version ("" = the base model)."""
        return str(self._served()["current"])

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name.startswith("v") and (p / "card.json").is_file())

    def card(self, version: str) -> dict[str, Any]:
        path = self.root / version / "card.json"
        if not path.is_file():
            raise NotFound(f"no adapter '{version}' for bot '{self.bot}'", hint="`shoal learn status` lists them")
        return json.loads(path.read_text())  # type: ignore[no-any-return]

    def path_of(self, version: str) -> Path | None:
        """The GGUF of ``version`` (None for the base model)."""
        if not version:
            return None
        self.card(version)
        return self.root / version / "adapter.gguf"

    def resolve(self, setting: str) -> Path | None:
        """A bot's ``adapter`` setting → the file to serve: "latest" = the promoted one, "" = none."""
        if not setting:
            return None
        return self.path_of(self.current if setting == "latest" else setting)

    # -- candidates ----------------------------------------------------------------
    def add_candidate(self, run_dir: Path, val_examples: list[dict[str, Any]]) -> str:
        """Copy a finished training run in as the next version (not served until promoted)."""
        run = json.loads((run_dir / "run.json").read_text())
        if not run.get("finished") or not (run_dir / "adapter.gguf").is_file():
            raise BadInput(f"the run in {run_dir} did not finish", hint="resume it with `shoal learn train --resume`")
        existing = self.versions()
        version = f"v{(int(existing[-1][1:]) + 1) if existing else 1:04d}"
        tmp = self.root / f".{version}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.copy2(run_dir / "adapter.gguf", tmp / "adapter.gguf")
        if (run_dir / "loss.png").is_file():
            shutil.copy2(run_dir / "loss.png", tmp / "loss.png")
        with (tmp / "val.jsonl").open("w", encoding="utf-8") as f:
            for e in val_examples:
                f.write(json.dumps(e, ensure_ascii=False) + "\n")
        card = {k: run.get(k) for k in (
            "config", "base", "base_fingerprint", "train_examples", "val_examples", "steps", "tokens_per_second",
            "val_loss_base", "val_loss_tuned", "canary_loss_base", "canary_loss_tuned",
        )}
        card.update(version=version, bot=self.bot, run=str(run_dir), created_at=time.time())
        (tmp / "card.json").write_text(json.dumps(card, indent=1))
        tmp.rename(self.root / version)
        return version

    def val_examples(self, version: str) -> list[dict[str, Any]]:
        path = self.root / version / "val.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    # -- promote / roll back -----------------------------------------------------------
    def promote(
        self,
        version: str,
        evaluator: Any,
        canary: list[dict[str, Any]],
        *,
        canary_margin: float = DEFAULT_CANARY_MARGIN,
        force: bool = False,
        base_fingerprint: str | None = None,
    ) -> Decision:
        """Score ``version`` against what is served (in llama.cpp) and make it current if it is better.

        ``evaluator`` is a :class:`shoal.learn.evaluate.EngineEvaluator` on the served base model.
        """
        candidate_path = self.path_of(version)
        assert candidate_path is not None
        current = self.current
        if version == current:
            raise BadInput(f"{version} is already served for bot '{self.bot}'")
        val = self.val_examples(version)
        if not val and not force:
            raise BadInput(
                f"{version} has no validation examples to judge it by",
                hint="build the dataset from at least two conversations (validation takes whole ones), or --force",
            )
        # what is served now (a damaged current file is scored as the base model: it cannot be served either)
        try:
            evaluator.use(self.path_of(current), base_fingerprint=base_fingerprint)
        except ModelError:
            evaluator.use(None)
        cur = evaluator.scores(val, canary)
        evaluator.use(candidate_path, base_fingerprint=base_fingerprint)  # a damaged candidate raises here
        cand = evaluator.scores(val, canary)
        evaluator.use(None)
        better = cand.val_loss is not None and cur.val_loss is not None and cand.val_loss < cur.val_loss
        forgets = (
            cand.canary_loss is not None and cur.canary_loss is not None
            and cand.canary_loss > cur.canary_loss + canary_margin
        )
        if force or (better and not forgets):
            reason = "forced" if force and not (better and not forgets) else (
                f"validation loss {_f(cur.val_loss)} → {_f(cand.val_loss)}; "
                f"canary {_f(cur.canary_loss)} → {_f(cand.canary_loss)} (within {canary_margin})"
            )
            promoted = True
        else:
            reason = (
                f"validation loss {_f(cand.val_loss)} is not below the served {_f(cur.val_loss)}"
                if not better
                else f"canary loss {_f(cur.canary_loss)} → {_f(cand.canary_loss)} rises more than {canary_margin}: it forgets"
            )
            promoted = False
        return self.decide(version, promoted, reason, cand.as_dict(), cur.as_dict())

    def decide(
        self, version: str, promoted: bool, reason: str, candidate: dict[str, Any], current: dict[str, Any]
    ) -> Decision:
        """Record a judgement of ``version`` against what is served (scored by the caller); serve it if ``promoted``."""
        served = self._served()
        was = served["current"]
        if promoted:
            self._write_served({"current": version, "history": [*served["history"], was]})
        self._log({"action": "promote", "version": version, "promoted": promoted, "reason": reason,
                   "candidate": candidate, "current": current, "was": was})
        return Decision(promoted, version, reason, candidate, current, self.current)

    def annotate(self, version: str, **fields: Any) -> None:
        """Add ``fields`` to the card of ``version`` (e.g. task scores measured after training)."""
        card = {**self.card(version), **fields}
        path = self.root / version / "card.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(card, indent=1))
        tmp.replace(path)

    def rollback(self) -> str:
        """Serve what was served before the current adapter; the version now served."""
        served = self._served()
        if not served["history"]:
            raise BadInput(f"bot '{self.bot}' serves the base model: there is nothing to roll back")
        previous = served["history"][-1]
        self._write_served({"current": previous, "history": served["history"][:-1]})
        self._log({"action": "rollback", "from": served["current"], "to": previous})
        return previous

    def _log(self, entry: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "log.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps({"at": time.time(), **entry}) + "\n")

    def history(self) -> list[dict[str, Any]]:
        path = self.root / "log.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def resolve_served(bot: str, setting: str) -> str:
    """A bot's ``adapter`` setting → the GGUF path to serve ("" = the base model); errors are logged, not raised.

    Read at every request: promoting or rolling back takes effect at the next reply, with no restart.
    """
    import logging

    from shoal.config import Settings

    try:
        path = AdapterRegistry(Settings().home, bot).resolve(setting)
    except (NotFound, ModelError, OSError) as exc:
        logging.getLogger(__name__).warning("bot %s: adapter %r not served: %s", bot, setting, exc)
        return ""
    return str(path) if path is not None else ""
