"""Training, export to llama.cpp, evaluation in the engine, promote and roll back — on the real shipped model.

One tiny run (rank 2, a few steps, short examples) is shared by the module: the
machine has 2 cores and the whole suite must stay fast.
"""

from __future__ import annotations

import json
import shutil
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from shoal.engine.llama import Context, Model, default_model_path
from shoal.engine.lora import LoraAdapter, sequence_logits, set_adapters
from shoal.errors import BadInput, ModelError
from shoal.learn.adapters import AdapterRegistry
from shoal.learn.base import gguf_fingerprint
from shoal.learn.evaluate import EngineEvaluator, canary_set
from shoal.learn.train import TrainConfig, TrainResult, encode, template_of, train

from .conftest import CFG, SYSTEM, examples

def test_the_loss_covers_only_the_target_reply(learn_home: Path) -> None:
    from shoal.learn.base import load_base

    _, tok = load_base(learn_home, default_model_path())
    ex = encode(examples()[0]["messages"], tok, template_of(tok), 96)
    target = tok.decode(ex.ids[ex.n_prompt:])
    assert target == "Rome.<|im_end|>"
    prompt = tok.decode(ex.ids[: ex.n_prompt])
    assert prompt.endswith("<|im_start|>assistant\n") and SYSTEM in prompt


def test_training_yields_to_a_reply_checkpoints_and_resumes(trained: tuple[TrainResult, TrainResult, list[str]]) -> None:
    first, second, notes = trained
    assert not first.finished and first.steps == 1
    assert first.paused_seconds > 0 and any("paused" in n for n in notes)
    assert second.finished and second.steps == 2
    assert second.losses[0] == first.losses[0]  # the resumed run kept the first step's record
    run = second.run_dir
    for name in ("adapter.gguf", "loss.png", "run.json", "checkpoint/adapter.safetensors", "adapter/adapter_config.json"):
        assert (run / name).is_file(), name
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((run / "run.json").read_text())
    assert meta["finished"] and meta["base_fingerprint"] == gguf_fingerprint(default_model_path())
    # it learned the style: lower loss on the held-out conversation
    assert second.val_loss_tuned is not None and second.val_loss_base is not None
    assert second.val_loss_tuned < second.val_loss_base


def test_resuming_with_other_settings_is_refused(trained: tuple[TrainResult, TrainResult, list[str]], learn_home: Path) -> None:
    _, second, _ = trained
    other = TrainConfig(**{**CFG.__dict__, "rank": 4})
    with pytest.raises(BadInput, match="other settings"):
        train(learn_home, default_model_path(), examples(), second.run_dir, other, resume=True)


def test_an_empty_training_split_gets_a_clear_error(learn_home: Path) -> None:
    only_val = [dict(e, split="val") for e in examples()]
    with pytest.raises(BadInput, match="no training examples"):
        train(learn_home, default_model_path(), only_val, learn_home / "runs" / "empty", CFG)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_the_gguf_adapter_in_llama_cpp_gives_the_logits_of_peft(trained: tuple[TrainResult, TrainResult, list[str]], learn_home: Path) -> None:
    import torch
    from peft import PeftModel

    from shoal.learn.base import load_base

    _, second, _ = trained
    base, tok = load_base(learn_home, default_model_path())
    with warnings.catch_warnings():  # transformers deprecations peft trips over
        warnings.simplefilter("ignore", FutureWarning)
        tuned = PeftModel.from_pretrained(base, second.run_dir / "adapter")
    tuned.eval()
    ex = encode(examples()[4]["messages"], tok, template_of(tok), 96)
    with torch.no_grad():
        peft_tuned = tuned(input_ids=torch.tensor([ex.ids])).logits[0].numpy()
        with tuned.disable_adapter():
            peft_base = tuned(input_ids=torch.tensor([ex.ids])).logits[0].numpy()
    model = Model(default_model_path())
    ctx = Context(model, n_ctx_seq=256, n_seq_max=1, n_batch=256, n_threads=1)
    try:
        llama_base = sequence_logits(ctx, ex.ids)
        adapter = LoraAdapter(model, second.run_dir / "adapter.gguf", base_fingerprint=gguf_fingerprint(default_model_path()))
        set_adapters(ctx, [adapter])
        llama_tuned = sequence_logits(ctx, ex.ids)
        set_adapters(ctx, [])
        llama_again = sequence_logits(ctx, ex.ids)
    finally:
        ctx.close()
        model.close()
    assert _cos(llama_tuned, peft_tuned) >= 0.99
    # the adapter's own effect agrees too (a wrong q/k permutation shows here first)
    assert _cos(llama_tuned - llama_base, peft_tuned - peft_base) >= 0.99
    assert _cos(llama_tuned, llama_base) < 0.999  # it does change something
    np.testing.assert_array_equal(llama_again, llama_base)  # cleared: exactly the base model


@pytest.fixture(scope="module")
def evaluator() -> Iterator[EngineEvaluator]:
    ev = EngineEvaluator(default_model_path())
    yield ev
    ev.close()


def test_promotion_needs_a_better_validation_loss_and_rollback_restores_the_base(
    trained: tuple[TrainResult, TrainResult, list[str]], learn_home: Path, evaluator: EngineEvaluator
) -> None:
    _, second, _ = trained
    reg = AdapterRegistry(learn_home, "conversation")
    val = [e for e in examples() if e["split"] == "val"]
    v1 = reg.add_candidate(second.run_dir, val)
    assert v1 == "v0001" and reg.current == ""
    fp = gguf_fingerprint(default_model_path())
    canary = canary_set()[:2]
    # the canary may not rise at all: a tight bound refuses what a looser one accepts
    strict = reg.promote(v1, evaluator, canary, canary_margin=-10.0, base_fingerprint=fp)
    assert not strict.promoted and "forgets" in strict.reason and reg.current == ""
    decision = reg.promote(v1, evaluator, canary, canary_margin=10.0, base_fingerprint=fp)
    assert decision.promoted, decision.reason
    assert decision.candidate["val_loss"] < decision.current["val_loss"]  # type: ignore[operator]
    assert reg.current == v1 and reg.resolve("latest") == reg.path_of(v1)
    # the same adapter again does not beat itself
    v2 = reg.add_candidate(second.run_dir, val)
    same = reg.promote(v2, evaluator, canary, canary_margin=10.0, base_fingerprint=fp)
    assert not same.promoted and "not below" in same.reason and reg.current == v1
    # roll back: the base model, exactly
    assert reg.rollback() == "" and reg.resolve("latest") is None
    with pytest.raises(BadInput, match="nothing to roll back"):
        reg.rollback()
    evaluator.use(None)
    assert evaluator.loss(val) == decision.current["val_loss"]


def test_a_corrupt_or_foreign_adapter_is_refused_and_the_served_one_stays(
    trained: tuple[TrainResult, TrainResult, list[str]], learn_home: Path, evaluator: EngineEvaluator
) -> None:
    _, second, _ = trained
    home = learn_home / "corrupt-home"
    reg = AdapterRegistry(home, "conversation")
    val = [e for e in examples() if e["split"] == "val"]
    fp = gguf_fingerprint(default_model_path())
    good = reg.add_candidate(second.run_dir, val)
    assert reg.promote(good, evaluator, [], canary_margin=10.0, base_fingerprint=fp).promoted
    for damage in ("truncated", "garbage", "foreign"):
        bad = reg.add_candidate(second.run_dir, val)
        path = reg.path_of(bad)
        assert path is not None
        data = path.read_bytes()
        if damage == "truncated":
            path.write_bytes(data[: len(data) // 2])
        elif damage == "garbage":
            path.write_bytes(b"not a gguf file at all" * 10)
        with pytest.raises(ModelError) as err:
            reg.promote(bad, evaluator, [], canary_margin=10.0, base_fingerprint="0123456789abcdef" if damage == "foreign" else fp)
        assert err.value.hint and (str(path) in err.value.message)
        if damage == "foreign":
            assert "another base model" in err.value.message
        assert reg.current == good  # what was served stays served
    shutil.rmtree(home)
