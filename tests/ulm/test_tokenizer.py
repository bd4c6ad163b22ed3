from __future__ import annotations

from pathlib import Path

import pytest

from shoal.errors import BadInput
from shoal.ulm.tokenizer import ULMTokenizer, byte_tokenizer, train_bpe

TEXT = ["To be, or not to be, that is the question: 1234 times.\n"] * 50


def test_a_trained_bpe_round_trips_text_and_splits_digits_one_by_one() -> None:
    tok = train_bpe(TEXT, 300)
    assert tok.vocab_size <= 300 and tok.eot_id == 0
    ids = tok.encode("not to be 1234\n")
    assert tok.decode(ids) == "not to be 1234\n"
    digits = [tok.hf.id_to_token(i) for i in tok.encode("1234")]
    assert digits == ["1", "2", "3", "4"]


def test_the_char_tokenizer_is_bytes_plus_end_of_text() -> None:
    tok = byte_tokenizer()
    assert tok.vocab_size == 257 and tok.eot_id == 256
    assert tok.encode("Ab\n") == [65, 98, 10]
    assert tok.decode(tok.encode("héllo")) == "héllo"


def test_save_and_load_keep_the_fingerprint(tmp_path: Path) -> None:
    tok = train_bpe(TEXT, 300)
    back = ULMTokenizer.load(tok.save(tmp_path / "t.json"))
    assert back.fingerprint == tok.fingerprint and back.encode("question") == tok.encode("question")
    assert byte_tokenizer().fingerprint != tok.fingerprint


def test_bad_tokenizer_files_and_sizes_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(BadInput, match="not a µLM tokenizer"):
        ULMTokenizer.load(tmp_path / "bad.json")
    with pytest.raises(BadInput, match="not found"):
        ULMTokenizer.load(tmp_path / "missing.json")
    with pytest.raises(BadInput, match="too small"):
        train_bpe(TEXT, 100)
