"""Read a GGUF file's metadata (chat template, special tokens) without loading the model.

Used for llama.cpp servers on this machine: knowing the template of the model
a server runs lets shoal continue a generation there exactly (mid-stream
failover through ``/v1/completions``). Pure Python, reads only the header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from shoal.errors import ModelError

_SCALARS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d",
}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True, slots=True)
class ChatInfo:
    template: str
    bos_token: str
    eos_token: str
    add_bos: bool


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("truncated GGUF header")
    return struct.unpack(fmt, data)[0]


def _string(f: BinaryIO) -> str:
    n = _read(f, "<Q")
    return f.read(n).decode("utf-8", "replace")


def _value(f: BinaryIO, vtype: int, keep: bool) -> Any:
    if vtype in _SCALARS:
        return _read(f, _SCALARS[vtype])
    if vtype == _STRING:
        return _string(f)
    if vtype == _ARRAY:
        itype, n = _read(f, "<I"), _read(f, "<Q")
        if not keep and itype in _SCALARS:
            f.seek(n * struct.calcsize(_SCALARS[itype]), 1)
            return None
        items = [_value(f, itype, keep) for _ in range(n)]
        return items if keep else None
    raise ValueError(f"unknown GGUF value type {vtype}")


def read_metadata(path: str | Path, keys: set[str]) -> dict[str, Any]:
    """The values of ``keys`` from the file's key/value header (missing keys are absent)."""
    out: dict[str, Any] = {}
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError("not a GGUF file")
        version = _read(f, "<I")
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old")
        _read(f, "<Q")  # tensor count
        n_kv = _read(f, "<Q")
        for _ in range(n_kv):
            key = _string(f)
            vtype = _read(f, "<I")
            value = _value(f, vtype, key in keys)
            if key in keys:
                out[key] = value
    return out


@lru_cache(maxsize=16)
def chat_info(path: str) -> ChatInfo:
    """The chat template and special tokens of a GGUF model file."""
    try:
        meta = read_metadata(
            path,
            {
                "tokenizer.chat_template",
                "tokenizer.ggml.tokens",
                "tokenizer.ggml.bos_token_id",
                "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.add_bos_token",
            },
        )
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot read the GGUF metadata of {path}: {exc}",
            hint="model_path must be the .gguf file the server runs",
        ) from exc
    template = meta.get("tokenizer.chat_template")
    if not template:
        raise ModelError(f"{path} has no chat template", hint="use a chat (instruct) model")
    tokens = meta.get("tokenizer.ggml.tokens") or []

    def text(key: str) -> str:
        i = meta.get(key)
        return tokens[i] if isinstance(i, int) and 0 <= i < len(tokens) else ""

    return ChatInfo(
        template=template,
        bos_token=text("tokenizer.ggml.bos_token_id"),
        eos_token=text("tokenizer.ggml.eos_token_id"),
        add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
    )
