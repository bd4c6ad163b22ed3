"""Tokenizers for µLMs: byte-level BPE trained locally, or plain bytes ("char").

Both are one kind of thing — a byte-level BPE (``tokenizers``) — so both
export to GGUF the same way: "char" is the BPE with no merges (256 byte tokens
plus ``<|endoftext|>``). Digits are always split one by one before BPE (the
pre-tokenizer SmolLM uses, which llama.cpp knows as ``smollm``): a model that
sees "1","2","3" learns arithmetic, one that sees "123" has to memorise it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable, Literal

from shoal.errors import BadInput

EOT = "<|endoftext|>"
Kind = Literal["bpe", "char"]


def _skeleton():  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


class ULMTokenizer:
    """A trained tokenizer: ``encode``/``decode``, its ``fingerprint`` (checked against checkpoints)."""

    def __init__(self, hf: object, kind: Kind) -> None:
        self.hf = hf
        self.kind = kind
        self.eot_id = int(hf.token_to_id(EOT))  # type: ignore[attr-defined]

    @property
    def vocab_size(self) -> int:
        return int(self.hf.get_vocab_size())  # type: ignore[attr-defined]

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text).ids)  # type: ignore[attr-defined]

    def decode(self, ids: Iterable[int]) -> str:
        return str(self.hf.decode([int(i) for i in ids], skip_special_tokens=True))  # type: ignore[attr-defined]

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "tokenizer": json.loads(self.hf.to_str())}, sort_keys=True)  # type: ignore[attr-defined]

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def vocab_and_merges(self) -> tuple[list[str], list[str]]:
        """Token strings by id (byte-level alphabet) and merges as "a b" lines, for GGUF."""
        model = json.loads(self.hf.to_str())["model"]  # type: ignore[attr-defined]
        vocab = model["vocab"]
        tokens = [""] * len(vocab)
        for text, i in vocab.items():
            tokens[i] = text
        for added in json.loads(self.hf.to_str()).get("added_tokens", []):  # type: ignore[attr-defined]
            if added["id"] >= len(tokens):
                tokens.extend([""] * (added["id"] + 1 - len(tokens)))
            tokens[added["id"]] = added["content"]
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
        return tokens, merges

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: Path) -> "ULMTokenizer":
        from tokenizers import Tokenizer

        try:
            data = json.loads(Path(path).read_text())
            return cls(Tokenizer.from_str(json.dumps(data["tokenizer"])), data["kind"])
        except FileNotFoundError as exc:
            raise BadInput(f"tokenizer file not found: {path}", hint="train one with `shoal ulm train CONFIG`") from exc
        except Exception as exc:  # JSON, missing keys, and tokenizers' own (plain Exception) errors
            raise BadInput(f"{path} is not a µLM tokenizer ({exc})", hint="delete it and train again") from exc


def byte_tokenizer() -> ULMTokenizer:
    """256 byte tokens + ``<|endoftext|>`` (id 256), no merges: the character-level tokenizer."""
    from tokenizers import pre_tokenizers
    from tokenizers.models import BPE

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet(), key=lambda ch: _byte_of(ch))
    tok = _skeleton()
    tok.model = BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[])
    tok.add_special_tokens([EOT])
    return ULMTokenizer(tok, "char")


def _byte_of(ch: str) -> int:
    """The byte a GPT-2 byte-level character stands for (orders the char vocabulary by byte)."""
    return (_BYTE_TABLE or _build_table())[ch]


_BYTE_TABLE: dict[str, int] = {}


def _build_table() -> dict[str, int]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    _BYTE_TABLE.update({chr(c): b for b, c in zip(bs, cs)})
    return _BYTE_TABLE


def train_bpe(texts: Iterable[str], vocab_size: int) -> ULMTokenizer:
    """A byte-level BPE of ``vocab_size`` tokens learned from ``texts`` (``<|endoftext|>`` is id 0)."""
    from tokenizers import pre_tokenizers, trainers

    if vocab_size < 258:
        raise BadInput(
            f"vocab_size {vocab_size} is too small for a byte-level BPE (256 bytes + 1 special + merges)",
            hint='use vocab_size >= 258, or tokenizer = "char"',
        )
    tok = _skeleton()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return ULMTokenizer(tok, "bpe")
