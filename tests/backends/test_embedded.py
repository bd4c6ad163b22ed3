"""The embedded backend and model files that are not what it expects."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shoal.backends.base import generate
from shoal.backends.embedded import EmbeddedBackend
from shoal.config import EngineConfig
from shoal.errors import ModelError
from shoal.types import ChatMessage, GenerateRequest, SamplingParams


def without_template(model_path: Path, tmp: Path) -> Path:
    """A copy of the model whose header no longer names a chat template (the key renamed, same length)."""
    out = tmp / "no-template.gguf"
    shutil.copyfile(model_path, out)
    with open(out, "r+b") as f:
        head = f.read(8 << 20)
        at = head.find(b"tokenizer.chat_template")
        assert at > 0
        f.seek(at)
        f.write(b"tokenizer.chat_templatX")
    return out


async def test_a_model_without_a_chat_template_is_a_clear_error_unless_a_format_is_set(model_path: Path, tmp_path: Path) -> None:
    path = without_template(model_path, tmp_path)
    plain = EmbeddedBackend("odd", model_path=path, engine=EngineConfig(max_sequences=1, context=512))
    with pytest.raises(ModelError, match="no chat template") as e:
        await plain.start()
    assert e.value.hint and "chat_format" in e.value.hint
    await plain.aclose()
    chosen = EmbeddedBackend("odd", model_path=path, engine=EngineConfig(max_sequences=1, context=512), chat_format="chatml")
    try:
        out = await generate(
            chosen,
            GenerateRequest(messages=[ChatMessage("user", "Say hello.")], sampling=SamplingParams(max_tokens=8, temperature=0.0)),
        )
        assert out.text.strip()
    finally:
        await chosen.aclose()
