"""The embedded engine: one model, one owned thread, many sequences.

Every step the engine thread builds one llama.cpp batch:

* foreground sequences are always in it (a prompt chunk or their next token);
* background sequences fill what is left of a token budget, in priority
  order (primary > memory > thinking, then rank, then arrival); while a
  foreground prompt is being read they wait, so the person's first token
  costs one pass over the weights, not two;
* a sequence that is not scheduled keeps its KV cells and resumes where it
  stopped (no recomputation).

Prompts that share a prefix with a live or recently finished sequence reuse
its KV cells instead of recomputing them: finished sequences' cells are kept
in host memory (``engine.prefix_cache`` contexts' worth, least recently used
out) and restored; a live sequence's KV stream is copied and cut.

Each sequence has a KV stream of its own, so its output does not depend on
what else is in the batch: greedy decoding gives the same text alone or
batched (see ``Context``; docs/engine.md says what prefix reuse changes). The
batch is laid out in sequence-id order and live sequences hold the lowest
ids: llama.cpp computes one pass per run of consecutive ids.

Cancellation is a flag checked between steps; a finished, failed or
cancelled sequence frees its slot at once. Errors that belong to one request
(context too long, a rejected grammar, no KV room left) fail that request
only.
"""

from __future__ import annotations

import asyncio
import codecs
import heapq
import itertools
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from shoal.config import EngineConfig
from shoal.engine.cpu import BUDGET
from shoal.engine.llama import Context, Model, Sampler
from shoal.errors import BackendError, CapacityError, ContextOverflow, GenerationCancelled
from shoal.types import Chunk, GenerateRequest, Priority

log = logging.getLogger(__name__)

Emit = Callable[["Chunk | BaseException"], None]

#: a reused prefix shorter than this is not worth the bookkeeping
MIN_SHARED_PREFIX = 16


@dataclass(eq=False)
class _Seq:
    req: GenerateRequest
    prompt: list[int]
    emit: Emit
    order: int
    max_tokens: int
    seq_id: int = -1
    #: tokens whose KV cells are computed (prompt first, then generated)
    fed: list[int] = field(default_factory=list)
    pending: int | None = None
    generated: int = 0
    sampler: Sampler | None = None
    decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    held: str = ""
    reused: int = 0
    t_submit: float = field(default_factory=time.perf_counter)
    t_first: float | None = None
    done: bool = False
    #: a decode has run since admission (so its KV cells are really there)
    decoded: bool = False

    @property
    def n_past(self) -> int:
        return len(self.fed)

    @property
    def prefilling(self) -> bool:
        return self.n_past < len(self.prompt)

    @property
    def foreground(self) -> bool:
        return self.req.priority == Priority.FOREGROUND

    @property
    def sort_key(self) -> tuple[int, int, int]:
        return (int(self.req.priority), -self.req.rank, self.order)


@dataclass(eq=False)
class _Prefix:
    """A finished sequence's KV cells, kept in host memory for prefix reuse."""

    tokens: list[int]
    state: Any  # llama.cpp's serialised cells of one sequence (a ctypes buffer)
    #: the adapter the cells were computed under (cells are wrong under another)
    adapter: str = ""


@dataclass
class EngineStats:
    steps: int = 0
    tokens_generated: int = 0
    prompt_tokens: int = 0
    prompt_tokens_reused: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    rejected: int = 0
    adapter_switches: int = 0


class Engine:
    """Serve many concurrent generations from one model on one owned thread."""

    def __init__(self, model: Model, config: EngineConfig, *, name: str = "embedded") -> None:
        self.model = model
        self.config = config
        self.name = name
        # seq ids = KV streams, one per live sequence
        self.n_seq = config.max_sequences
        self.ctx = Context(
            model,
            n_ctx_seq=min(config.context, model.n_ctx_train or config.context),
            n_seq_max=self.n_seq,
            n_batch=config.batch,
            n_threads=config.threads,
        )
        self.n_ctx_seq = self.ctx.n_ctx_seq
        self.stats = EngineStats()
        self._lock = threading.Condition()
        self._incoming: list[tuple[tuple[int, int, int], _Seq]] = []  # heap
        self._active: list[_Seq] = []
        # finished sequences' KV cells in host memory, least recently used first
        self._store: OrderedDict[int, _Prefix] = OrderedDict()
        self._store_keys = itertools.count()
        self._store_cells = 0
        # a min-heap: live sequences take the lowest ids (see _step for why)
        self._free_ids = list(range(self.n_seq))
        # ids whose stream has a copy queued: llama.cpp copies streams at the
        # start of the next decode, which would overwrite a restored prefix
        self._copy_pending: set[int] = set()
        self._order = itertools.count()
        # LoRA adapters by file, loaded on first use; the set the context has now
        self._adapters: dict[str, Any] = {}
        self._applied = ""
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"shoal-engine-{name}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ public
    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._incoming)

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._active)

    def submit(self, req: GenerateRequest, prompt: list[int], emit: Emit) -> None:
        """Queue a request (thread-safe). ``emit`` receives chunks or one error."""
        if not prompt:
            raise ValueError("empty prompt")
        if len(prompt) >= self.n_ctx_seq:
            raise ContextOverflow(
                f"the prompt is {len(prompt)} tokens; the context holds {self.n_ctx_seq}",
                hint="shorten the history (bots.history) or raise engine.context",
            )
        max_tokens = min(req.sampling.max_tokens, self.n_ctx_seq - len(prompt))
        grammar = req.grammar
        if grammar is None and req.json_schema is not None:
            grammar = schema_to_grammar(req.json_schema)
        seq = _Seq(req=req, prompt=prompt, emit=emit, order=next(self._order), max_tokens=max_tokens)
        s = req.sampling
        try:
            seq.sampler = Sampler(
                self.model,
                temperature=s.temperature,
                top_k=s.top_k,
                top_p=s.top_p,
                min_p=s.min_p,
                # repetition penalties fight grammars (JSON repeats quotes)
                repeat_penalty=1.0 if grammar else s.repeat_penalty,
                seed=s.seed,
                grammar=grammar,
                min_tokens=min(s.min_tokens, max_tokens),
                presence_penalty=0.0 if grammar else s.presence_penalty,
                frequency_penalty=0.0 if grammar else s.frequency_penalty,
                dry_multiplier=0.0 if grammar else s.dry_multiplier,
                dry_base=s.dry_base,
                dry_allowed_length=s.dry_allowed_length,
                dry_last_n=s.dry_last_n,
            )
        except ValueError as exc:
            raise BackendError(str(exc), hint="check the JSON schema / grammar") from exc
        with self._lock:
            if self._stopping:
                seq.sampler.close()
                raise BackendError("the engine is shutting down")
            if len(self._incoming) >= self.config.max_pending:
                seq.sampler.close()
                self.stats.rejected += 1
                raise CapacityError(
                    f"the embedded engine already has {len(self._incoming)} requests waiting",
                    hint="retry later or raise engine.max_pending",
                )
            heapq.heappush(self._incoming, (seq.sort_key, seq))
            self._lock.notify()

    async def stream(self, req: GenerateRequest, prompt: list[int]) -> AsyncIterator[Chunk]:
        """Submit and yield chunks as the engine thread produces them."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Chunk | BaseException] = asyncio.Queue()

        def emit(item: Chunk | BaseException) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # loop closed: nobody is listening any more
                req.cancel.cancel("event loop closed")

        self.submit(req, prompt, emit)
        finished = False
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                if item.finish_reason is not None:
                    finished = True
                yield item
                if finished:
                    return
        finally:
            if not finished:
                req.cancel.cancel("the consumer stopped reading")
                self.wake()

    def wake(self) -> None:
        with self._lock:
            self._lock.notify()

    def close(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify()
        self._thread.join(timeout=30)
        self.ctx.close()

    # ------------------------------------------------------------ thread
    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not self._incoming and not self._active:
                    self._lock.wait()
                if self._stopping:
                    break
            try:
                self._step()
            except Exception as exc:  # a bug: fail what is in flight, keep serving
                log.exception("engine step failed")
                for seq in list(self._active):
                    self._fail(seq, BackendError(f"engine error: {exc}"))
        for seq in list(self._active):
            self._fail(seq, BackendError("the engine shut down"))
        with self._lock:
            while self._incoming:
                _, seq = heapq.heappop(self._incoming)
                self._fail(seq, BackendError("the engine shut down"))

    def _admit(self) -> None:
        with self._lock:
            while self._incoming:
                key, seq = self._incoming[0]
                if seq.req.cancel.cancelled:
                    heapq.heappop(self._incoming)
                    self._finish_cancelled(seq)
                    continue
                n_bg = sum(1 for s in self._active if not s.foreground)
                room = len(self._active) < self.config.max_sequences
                # background may not take the last slot: it is the foreground's
                bg_room = n_bg < max(1, self.config.max_sequences - 1)
                if not room or (not seq.foreground and not bg_room):
                    break
                if not self._free_ids:
                    break
                heapq.heappop(self._incoming)
                seq.seq_id = heapq.heappop(self._free_ids)
                self._active.append(seq)
                self._reuse_prefix(seq)

    def _reuse_prefix(self, seq: _Seq) -> None:
        """Start ``seq`` from the longest prefix a stored or live sequence has computed."""
        limit = len(seq.prompt) - 1  # the last prompt token is decoded for its logits
        best_len, best_key = 0, -1
        # stored prefixes first: restoring one (a memcpy of the cells used)
        # is cheaper than copying a live sequence's whole stream
        stored = self._store.items() if seq.seq_id not in self._copy_pending else ()
        for key, prefix in stored:
            if prefix.adapter != seq.req.adapter:
                continue
            n = _common_prefix(prefix.tokens, seq.prompt, limit)
            if n > best_len:
                best_len, best_key = n, key
        best_live: _Seq | None = None
        for other in self._active:
            if other is not seq and other.req.adapter == seq.req.adapter:
                n = _common_prefix(other.fed, seq.prompt, limit)
                if n > best_len:
                    best_len, best_live = n, other
        if best_len < MIN_SHARED_PREFIX:
            return
        if best_live is not None:
            self.ctx.seq_share_prefix(best_live.seq_id, seq.seq_id, best_len)
            self._copy_pending.add(seq.seq_id)
        else:
            self._store.move_to_end(best_key)
            if not self.ctx.state_load(seq.seq_id, self._store[best_key].state):
                log.warning("could not restore a stored prefix; computing the prompt instead")
                self.ctx.seq_rm(seq.seq_id)
                self._drop_prefix(best_key)
                return
            self.ctx.seq_rm(seq.seq_id, best_len, -1)
        seq.fed = list(seq.prompt[:best_len])
        seq.reused = best_len
        self.stats.prompt_tokens_reused += best_len

    def _save_prefix(self, seq: _Seq) -> None:
        """Copy a finished sequence's KV cells to host memory for later prompts to reuse."""
        budget = self.config.prefix_cache * self.n_ctx_seq
        if budget <= 0 or not seq.decoded or len(seq.fed) < MIN_SHARED_PREFIX or len(seq.fed) > budget:
            return
        # a prefix this sequence extends is superseded (a conversation's
        # previous turn, the instruction it started from)
        for key in [k for k, p in self._store.items() if p.tokens == seq.fed[: len(p.tokens)]]:
            self._drop_prefix(key)
        state = self.ctx.state_save(seq.seq_id)
        if state is None:
            return
        self._store[next(self._store_keys)] = _Prefix(list(seq.fed), state, seq.req.adapter)
        self._store_cells += len(seq.fed)
        while self._store_cells > budget:
            self._drop_prefix(next(iter(self._store)))

    def _drop_prefix(self, key: int) -> None:
        self._store_cells -= len(self._store.pop(key).tokens)

    def _plan(self) -> list[tuple[_Seq, int]]:
        """Choose (sequence, n_tokens) for this step."""
        budget = self.config.batch
        plan: list[tuple[_Seq, int]] = []
        order = sorted(self._active, key=lambda s: s.sort_key)
        # an adapter applies to a whole batch: this step serves the most urgent sequence's
        # adapter set; the others wait a step (the foreground still goes first)
        if order:
            order = [s for s in order if s.req.adapter == order[0].req.adapter]
        fg_prefill = any(s.foreground and s.prefilling for s in order)
        fg_present = any(s.foreground for s in order)
        bg_budget = self.config.background_budget if fg_present else budget
        for seq in order:
            if budget <= 0:
                break
            if fg_prefill and not seq.foreground:
                # read the person's prompt alone: llama.cpp runs one pass per
                # distinct token count across KV streams, so even one background
                # token beside a prompt chunk costs a whole extra decode pass
                continue
            if seq.prefilling:
                chunk = self.config.prefill_chunk if seq.foreground else min(self.config.prefill_chunk, bg_budget)
                n = min(len(seq.prompt) - seq.n_past, chunk, budget)
            else:
                n = 1
            if not seq.foreground:
                n = min(n, bg_budget)
                if n <= 0:
                    continue
                bg_budget -= n
            plan.append((seq, n))
            budget -= n
        return plan

    def _step(self) -> None:
        self._admit()
        for seq in list(self._active):
            if seq.req.cancel.cancelled:
                self._finish_cancelled(seq)
        if not self._active:
            return
        plan = self._plan()
        if not plan:
            return
        items: list[tuple[int, int, int, bool]] = []
        outputs: list[tuple[_Seq, int]] = []
        # With one KV stream per sequence, llama.cpp splits a batch into one
        # pass per run of *consecutive, ascending* sequence ids
        # (split_equal(sequential)). Items go in id order and live sequences
        # hold the lowest ids, so a decode step over N sequences is one pass.
        for seq, n in sorted(plan, key=lambda p: p[0].seq_id):
            if seq.prefilling:
                start = seq.n_past
                toks = seq.prompt[start : start + n]
                last = start + n == len(seq.prompt)
                for i, tok in enumerate(toks):
                    want = last and i == len(toks) - 1
                    if want:
                        outputs.append((seq, len(items)))
                    items.append((tok, start + i, seq.seq_id, want))
            else:
                assert seq.pending is not None
                outputs.append((seq, len(items)))
                items.append((seq.pending, seq.n_past, seq.seq_id, True))
        self._use_adapter(plan[0][0].req.adapter, [seq for seq, _ in plan])
        if any(seq.foreground for seq, _ in plan):
            BUDGET.note_foreground()  # a trainer yields its threads to this reply (shoal.learn.train)
        self.ctx.set_threads(BUDGET.threads_for(self.config.threads, contention=self.config.adapt_threads))
        status = self.ctx.decode(items)
        if status == 1:
            self._relieve_kv(plan)
            return
        if status != 0:
            for seq, _ in plan:
                self._fail(seq, BackendError(f"llama_decode failed with status {status}"))
            return
        self.stats.steps += 1
        self._copy_pending.clear()
        for seq, n in plan:
            seq.decoded = True
            if seq.prefilling:
                seq.fed.extend(seq.prompt[seq.n_past : seq.n_past + n])
                self.stats.prompt_tokens += n
            else:
                assert seq.pending is not None
                seq.fed.append(seq.pending)
                seq.pending = None
        for seq, idx in outputs:
            if seq.done:
                continue
            assert seq.sampler is not None
            tok = seq.sampler.sample(self.ctx, idx)
            self._accept(seq, tok)

    def _use_adapter(self, path: str, seqs: list[_Seq]) -> None:
        """Give the context ``path``'s adapter (loaded once); a file that cannot be loaded serves the base model."""
        if path == self._applied:
            return
        from shoal.engine.lora import LoraAdapter, set_adapters
        from shoal.errors import ModelError

        if path and path not in self._adapters:
            try:
                self._adapters[path] = LoraAdapter(self.model, path)
            except ModelError as exc:
                log.error("adapter %s not served (the base model answers instead): %s", path, exc)
                self._adapters[path] = None
        adapter = self._adapters.get(path) if path else None
        set_adapters(self.ctx, [adapter] if adapter is not None else [])
        self._applied = path
        self.stats.adapter_switches += 1

    def _relieve_kv(self, plan: list[tuple[_Seq, int]]) -> None:
        """No KV room for the batch: fail the least urgent sequence."""
        victims = sorted(self._active, key=lambda s: s.sort_key)
        victim = victims[-1]
        self._fail(
            victim,
            ContextOverflow(
                "the engine ran out of KV cache space for this request",
                hint="raise engine.context, lower engine.max_sequences, or shorten prompts",
            ),
        )

    def _accept(self, seq: _Seq, tok: int) -> None:
        if seq.t_first is None:
            seq.t_first = time.perf_counter()
        if self.model.is_eog(tok):
            self._finish(seq, "stop")
            return
        seq.generated += 1
        self.stats.tokens_generated += 1
        if seq.sampler is not None and seq.sampler.holds_eog and seq.generated >= seq.req.sampling.min_tokens:
            seq.sampler.release_eog()
        text = seq.decoder.decode(self.model.piece(tok))
        stop_hit = self._emit_text(seq, text)
        if stop_hit:
            self._finish(seq, "stop", flush=False)
        elif seq.generated >= seq.max_tokens or seq.n_past + 1 >= self.n_ctx_seq:
            self._finish(seq, "length")
        else:
            seq.pending = tok

    def _emit_text(self, seq: _Seq, text: str) -> bool:
        stops = seq.req.sampling.stop
        if not stops:
            if text:
                seq.emit(Chunk(text=text))
            return False
        buf = seq.held + text
        for stop in stops:
            i = buf.find(stop)
            if i >= 0:
                if i:
                    seq.emit(Chunk(text=buf[:i]))
                seq.held = ""
                return True
        keep = 0
        for stop in stops:
            for k in range(min(len(stop) - 1, len(buf)), 0, -1):
                if buf.endswith(stop[:k]):
                    keep = max(keep, k)
                    break
        out, seq.held = (buf[: len(buf) - keep], buf[len(buf) - keep :]) if keep else (buf, "")
        if out:
            seq.emit(Chunk(text=out))
        return False

    def _release(self, seq: _Seq, *, keep_prefix: bool) -> None:
        seq.done = True
        if seq in self._active:
            self._active.remove(seq)
        if seq.sampler:
            seq.sampler.close()
            seq.sampler = None
        if seq.seq_id >= 0:
            if keep_prefix:
                self._save_prefix(seq)
            self.ctx.seq_rm(seq.seq_id)
            heapq.heappush(self._free_ids, seq.seq_id)
            seq.seq_id = -1

    def _finish(self, seq: _Seq, reason: str, *, flush: bool = True) -> None:
        # text held back as a possible stop-string prefix is real output
        # unless a stop string actually matched
        tail = (seq.held + seq.decoder.decode(b"", final=True)) if flush else ""
        seq.held = ""
        self._release(seq, keep_prefix=True)
        self.stats.completed += 1
        seq.emit(
            Chunk(
                text=tail,
                finish_reason=reason,  # type: ignore[arg-type]
                prompt_tokens=len(seq.prompt),
                completion_tokens=seq.generated,
                served_by=self.name,
            )
        )

    def _finish_cancelled(self, seq: _Seq) -> None:
        self._release(seq, keep_prefix=True)
        self.stats.cancelled += 1
        seq.emit(GenerationCancelled(seq.req.cancel.reason or "cancelled"))

    def _fail(self, seq: _Seq, exc: BaseException) -> None:
        self._release(seq, keep_prefix=False)
        self.stats.failed += 1
        seq.emit(exc)


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def schema_to_grammar(schema: dict) -> str:  # type: ignore[type-arg]
    import json

    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises bare Exceptions
        raise BackendError(f"cannot compile the JSON schema to a grammar: {exc}") from exc
