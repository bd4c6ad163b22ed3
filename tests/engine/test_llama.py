"""The llama.cpp binding's own errors: a file llama.cpp cannot load is a ModelError that says what to check."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.engine.llama import Model
from shoal.errors import ModelError


def test_a_file_llama_cpp_cannot_load_is_a_model_error_with_a_hint(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF but not really" * 64)
    with pytest.raises(ModelError, match="could not load") as err:
        Model(bad)
    assert str(bad) in err.value.message and err.value.hint


def test_a_missing_model_file_is_a_model_error_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found") as err:
        Model(tmp_path / "absent.gguf")
    assert err.value.hint and "model_path" in err.value.hint
