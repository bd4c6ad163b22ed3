"""The exported GGUF runs in llama.cpp (the embedded engine) and computes what torch computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shoal.config import EngineConfig
from shoal.engine.llama import Model
from shoal.engine.scheduler import Engine
from shoal.types import GenerateRequest, SamplingParams
from shoal.ulm import checkpoint
from shoal.ulm.export import export, gguf_name, llama_logits

PROMPT = "KING. What say you, my lord? I have 1234 reasons.\n"


@pytest.fixture(scope="module")
def gguf_file(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(tiny_run, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_tensor_names_follow_llama_cpp() -> None:
    assert gguf_name("embed.weight") == "token_embd.weight"
    assert gguf_name("blocks.3.attn.wq.weight") == "blk.3.attn_q.weight"
    assert gguf_name("blocks.0.ffn.down.weight") == "blk.0.ffn_down.weight"


def test_llama_cpp_tokenizes_exactly_like_the_trained_tokenizer(tiny_run: Path, gguf_file: Path) -> None:
    tok = checkpoint.load(tiny_run).tokenizer
    model = Model(gguf_file)
    try:
        for text in (PROMPT, "  double  spaces\n\nand 99 digits", "Q: 12*34\n<calc>12*34</calc>=408\n"):
            assert model.tokenize(text, add_special=True, parse_special=False) == tok.encode(text)
    finally:
        model.close()


def test_llama_cpp_logits_match_torch(tiny_run: Path, gguf_file: Path) -> None:
    loaded = checkpoint.load(tiny_run)
    ids = loaded.tokenizer.encode(PROMPT)[:32]
    ours = loaded.model(torch.tensor([ids]))[0][0].detach().numpy()
    theirs = llama_logits(gguf_file, ids)
    cos = (ours * theirs).sum(-1) / np.linalg.norm(ours, axis=-1) / np.linalg.norm(theirs, axis=-1)
    assert cos.min() >= 0.999


async def test_the_engine_serves_the_export_and_greedy_text_matches_torch(tiny_run: Path, gguf_file: Path) -> None:
    loaded = checkpoint.load(tiny_run)
    ids = loaded.tokenizer.encode("KING")
    want = loaded.model.generate(torch.tensor([ids]), 20)[0, len(ids) :].tolist()
    model = Model(gguf_file)
    engine = Engine(model, EngineConfig(threads=1, context=256, max_sequences=2), name="ulm")
    try:
        sp = SamplingParams(max_tokens=20, temperature=0.0, repeat_penalty=1.0, top_k=0, top_p=1.0, min_p=0.0)
        text = "".join([c.text async for c in engine.stream(GenerateRequest(messages=[], sampling=sp), ids)])
    finally:
        engine.close()
        model.close()
    assert text == loaded.tokenizer.decode(want)[: len(text)] and len(text) > 0


async def test_the_export_is_a_cluster_model_behind_the_embedded_backend(gguf_file: Path) -> None:
    from shoal.backends.embedded import EmbeddedBackend
    from shoal.types import ChatMessage

    backend = EmbeddedBackend(
        "ulm", model_path=gguf_file, model_name="ulm-tiny", chat_format="plain",
        engine=EngineConfig(threads=1, context=256, max_sequences=2),
    )
    try:
        sp = SamplingParams(max_tokens=8, temperature=0.0)
        req = GenerateRequest(messages=[ChatMessage("user", "Speak, my lord.")], model="ulm-tiny", sampling=sp)
        chunks = [c async for c in backend.stream(req)]
    finally:
        await backend.aclose()
    assert chunks[-1].finish_reason in ("stop", "length") and chunks[-1].served_by == "ulm"
    assert await backend.models() == ["ulm-tiny"]
