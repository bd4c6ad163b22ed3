"""The memory extraction adapter (issue 14 item 6): generated data → LoRA → judged on a labelled set.

Reads top to bottom:

1. ``adapter_messages`` — the adapter's own prompt: one short system line and the message
   (the base model needs ``memory.extract``'s few-shot prompt; a tuned model does not, and every
   prompt token costs the memory bot time);
2. ``training_examples`` — the generated messages (``learn.extraction_data``) as chat examples
   whose target is the JSON ``FACT_SCHEMA`` constrains the model to;
3. ``train_extraction`` — ``learn.train`` on them (peft LoRA on the dequantised served GGUF);
4. ``pipeline_facts`` / ``score_facts`` — what the memory bot would store for each message of a
   labelled set written by hand (rules + model candidates + ``extract()`` grounding), with the
   base model and with the adapter, scored for recall and precision;
5. ``decide`` — the candidate is served (``[memory] extraction_adapter = "latest"``) only when it
   raises recall over what is served with precision not lower.

The adapters are versioned like a bot's, under ``SHOAL_HOME/learn/adapters/memory.extraction/``
(a name no bot can have: bot names have no dot).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from shoal.errors import BadInput

#: the adapter registry's name for the extraction adapter (``learn.adapters.AdapterRegistry``)
EXTRACTION_ADAPTERS = "memory.extraction"
SYSTEM = "List the facts the user states about themselves as JSON."
#: ``FACT_SCHEMA`` allows at most this many facts per message
MAX_FACTS = 4


def adapter_messages(instruction: str, message: str) -> list[tuple[str, str]]:
    """The extraction prompt under the adapter: what it was trained on (``instruction`` is not part of it)."""
    return [("system", SYSTEM), ("user", message)]


def target(facts: Sequence[dict[str, str]]) -> str:
    """The JSON the schema-constrained model writes for ``facts`` (json.dumps spacing, schema key order)."""
    return json.dumps({"facts": [{"attribute": f["attribute"], "value": f["value"]} for f in facts[:MAX_FACTS]]})


def training_examples(items: Sequence[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    out = []
    for item in items:
        msgs = [{"role": r, "content": c} for r, c in adapter_messages("", item["text"])]
        out.append({"messages": [*msgs, {"role": "assistant", "content": target(item["facts"])}], "split": split})
    return out


def train_extraction(
    home: Path, gguf: Path, run_dir: Path, cfg: Any, *, n_train: int, n_val: int | None = None, seed: int = 0,
    progress: Any = None,
) -> Any:
    """Train a candidate on ``n_train`` generated messages (``n_val`` more for the validation loss;
    by default a sixth as many, 4 to 40)."""
    from shoal.learn.extraction_data import generate
    from shoal.learn.train import train

    n_val = max(4, min(40, n_train // 6)) if n_val is None else n_val
    items = generate(n_train + n_val, seed=seed)
    examples = training_examples(items[:n_train], "train") + training_examples(items[n_train:], "val")
    return train(home, gguf, examples, run_dir, cfg, progress=progress)


# ------------------------------------------------------------------ scoring against labels
_ARTICLES = re.compile(r"^(?:a|an|the|my|our)\s+", re.I)
_EQUIVALENT = {"hobby": "likes"}


def _norm(value: str) -> list[str]:
    v = _ARTICLES.sub("", value.strip().lower())
    return [w for w in re.findall(r"[\w'\-]+", v) if w not in ("a", "an", "the", "my")]


def _names(value: str) -> set[str]:
    return {w.lower() for w in re.findall(r"\b[A-Z][\w'\-]+", value)}


def same_fact(pred: tuple[str, str], gold: tuple[str, str]) -> bool:
    """Same kind (likes and hobby count as one) and the same value, give or take articles and inflection."""
    pa, pv = pred
    ga, gv = gold
    if _EQUIVALENT.get(pa, pa) != _EQUIVALENT.get(ga, ga):
        return False
    if pa in ("family", "pet") and _names(pv) and _names(gv):
        return bool(_names(pv) & _names(gv))  # "son Sam" and "child Sam" name the same person
    p, g = _norm(pv), _norm(gv)
    if not p or not g:
        return False
    stem = lambda ws: {w.rstrip("s") for w in ws}  # noqa: E731
    return stem(g) <= stem(p) or stem(p) <= stem(g)


@dataclass
class FactScore:
    gold: int = 0
    predicted: int = 0
    matched_gold: int = 0
    matched_pred: int = 0
    false_on_questions: int = 0
    misses: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.matched_gold / self.gold if self.gold else 1.0

    @property
    def precision(self) -> float:
        return self.matched_pred / self.predicted if self.predicted else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"recall": round(self.recall, 4), "precision": round(self.precision, 4), "gold": self.gold,
                "predicted": self.predicted, "false_on_questions": self.false_on_questions}


def score_facts(items: list[dict[str, Any]], predictions: list[list[tuple[str, str]]]) -> FactScore:
    s = FactScore()
    for item, pred in zip(items, predictions):
        gold = [(f["attribute"], f["value"]) for f in item["facts"]]
        s.gold += len(gold)
        s.predicted += len(pred)
        for g in gold:
            if any(same_fact(p, g) for p in pred):
                s.matched_gold += 1
            else:
                s.misses.append(f"{item['id']}: {g} in {item['text']!r}")
        for p in pred:
            if any(same_fact(p, g) for g in gold):
                s.matched_pred += 1
            else:
                s.wrong.append(f"{item['id']}: {p} from {item['text']!r}")
        if item["kind"] in ("question", "request") and pred:
            s.false_on_questions += len(pred)
    return s


# ------------------------------------------------------------------ the labelled set and the pipeline
def default_labelled() -> list[Path]:
    """The hand-written labelled messages of a source checkout (``bench/data/quality/``)."""
    root = Path(__file__).resolve().parents[3] / "bench" / "data" / "quality"
    return [p for p in (root / "messages.json", root / "heldout.json") if p.is_file()]


def read_labelled(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Labelled messages ``[{"id", "text", "facts": [{"attribute", "value"}], "kind"}]`` from JSON files."""
    if not paths:
        raise BadInput(
            "no labelled set to judge the extraction adapter by",
            hint="pass --labelled FILE (a JSON list of {id, text, facts, kind}); a source checkout has bench/data/quality/",
        )
    items: list[dict[str, Any]] = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            for d in data:
                if not isinstance(d.get("text"), str) or not isinstance(d.get("facts"), list):
                    raise ValueError(f"item {d.get('id')!r} needs text and facts")
                items.append({"id": str(d.get("id", len(items))), "text": d["text"], "kind": d.get("kind", "statement"),
                              "facts": [{"attribute": f["attribute"], "value": f["value"]} for f in d["facts"]],
                              "set": Path(path).stem})
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BadInput(f"cannot read the labelled set {path}: {exc}", hint="a JSON list of {id, text, facts, kind}") from exc
    if not items:
        raise BadInput("the labelled set is empty", hint="pass --labelled FILE with labelled messages")
    return items


#: the base model's extraction instruction, as bench/quality.py measures it
BASE_INSTRUCTION = "You extract facts the user states about themselves."


async def pipeline_facts(
    backend: Any, items: Sequence[dict[str, Any]], *, adapter: str = "", max_tokens: int = 96,
    progress: Callable[[], None] | None = None,
) -> list[list[tuple[str, str]]]:
    """What the memory bot stores for each message: rule + model candidates grounded by ``extract()``.

    ``adapter`` (a GGUF LoRA file) is served with its own prompt; without one, the base model gets
    the few-shot prompt of ``memory.extract``."""
    from shoal.memory.extract import extract
    from shoal.memory.pipeline import ModelExtractor

    extractor = ModelExtractor(
        backend, instruction=BASE_INSTRUCTION, max_tokens=max_tokens, adapter=adapter, adapter_prompt=adapter_messages,
    )
    out = []
    for item in items:
        facts, _rejected = extract(item["text"], await extractor(item["text"]))
        out.append([(f.attribute, f.value) for f in facts])
        if progress:
            progress()
    return out


async def score_sets(
    backend: Any, items: Sequence[dict[str, Any]], *, adapter: str = "", progress: Callable[[], None] | None = None,
) -> dict[str, FactScore]:
    """``pipeline_facts`` scored overall (``"all"``) and per labelled file (an item's ``set``)."""
    preds = await pipeline_facts(backend, items, adapter=adapter, progress=progress)
    sets = {"all": score_facts(list(items), preds)}
    for name in dict.fromkeys(i.get("set", "") for i in items):
        pick = [n for n, i in enumerate(items) if i.get("set", "") == name]
        sets[name] = score_facts([items[n] for n in pick], [preds[n] for n in pick])
    return sets


def decide(served: FactScore, candidate: FactScore) -> tuple[bool, str]:
    """Serve the candidate when it finds more of the labelled facts and is no less precise."""
    figures = (f"recall {served.recall:.3f} → {candidate.recall:.3f}, "
               f"precision {served.precision:.3f} → {candidate.precision:.3f}")
    if candidate.recall <= served.recall:
        return False, f"{figures}: recall does not rise"
    if candidate.precision < served.precision:
        return False, f"{figures}: precision falls"
    return True, figures


def check_adapter(gguf: Path, adapter: Path, base_fingerprint: str) -> None:
    """Load ``adapter`` in llama.cpp on ``gguf`` (the engine would serve the base model in silence
    instead of a file it cannot load): ``ModelError`` with a hint for a damaged or foreign one."""
    from shoal.learn.evaluate import EngineEvaluator

    ev = EngineEvaluator(gguf, n_ctx=256)
    try:
        ev.use(adapter, base_fingerprint=base_fingerprint)
    finally:
        ev.close()
