"""The embedded engine under a swarm: a person's turn while thinkers generate.

A foreground chat turn arrives while 0, 1, 2 and 4 background thinkers are
generating. Three contenders serve the same workload, one after another:

* ``shoal``        — shoal's engine (continuous batching, priorities, one
                     KV stream per sequence), in process;
* ``fifo``         — one ``llama_cpp.Llama`` serving requests one at a time in
                     arrival order with ``create_completion(stream=True)``
                     (what a single Llama object or ``llama_cpp.server`` gives);
                     it also runs the bare single-stream baseline: a plain
                     ``create_completion`` loop over the foreground prompts;
* ``llama-server`` — llama.cpp's own server with ``--parallel`` (continuous
                     batching), built from the llama.cpp vendored in the same
                     llama-cpp-python release (bench/_llama_server.py).

Fairness (details in docs/engine.md): the same SmolLM2-135M GGUF, the same
token prompts (rendered once with the model's chat template; none is sent
twice), the same max_tokens, greedy sampling with no other sampler work, the
same threads (2), context per sequence (2048) and batch size (512), flash
attention as llama.cpp's default resolves it, and each contender alone on
the machine. Thinkers are closed loops (a new thought as soon as one ends);
foreground turns arrive one at a time after seeded random pauses, once the
thinkers are producing tokens. Aggregate tokens/s counts every token every
stream received between the first foreground submit and the last foreground
token. CPU used by other processes meanwhile is measured and reported.

    .venv/bin/python bench/engine_swarm.py            # full run, ~5 min on 2 quiet cores
    .venv/bin/python bench/engine_swarm.py --quick    # smoke run, ~2 min
    .venv/bin/python bench/engine_swarm.py --reps 20 --contenders shoal,llama-server
    .venv/bin/python bench/engine_swarm.py --runs 3    # three whole comparisons; last line: medians
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import queue
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _llama_server import LlamaServer, ensure_binary  # noqa: E402

from shoal.config import EngineConfig  # noqa: E402
from shoal.engine import chat  # noqa: E402
from shoal.engine.llama import Model, default_model_path  # noqa: E402
from shoal.engine.scheduler import Engine  # noqa: E402
from shoal.types import ChatMessage, GenerateRequest, Priority, SamplingParams  # noqa: E402

console = Console(stderr=True)
now = time.perf_counter

CTX = 2048  # KV cells per sequence, every contender
BATCH = 512

# -- the workload ---------------------------------------------------------------

INSTRUCTION = (
    "You are shoal, a friendly assistant who talks with one person. Answer clearly in a few "
    "sentences, stay on the topic of the question and be kind."
)
THINKER = (
    "You are a thinker in the background of a conversation. Think step by step about what the "
    "person said, what they might need next and what would help them. Write your thoughts."
)
HISTORY = [
    ("I just moved to a new city.", "Congratulations on the move! Settling in takes a little time."),
    ("I like to cook on weekends.", "That sounds lovely. Cooking is a great way to relax."),
    ("My sister is visiting next month.", "How nice! I hope you have a wonderful time together."),
    ("I have been learning the guitar.", "Great choice. A few minutes of practice every day adds up."),
    ("Work has been busy lately.", "That sounds tiring. Remember to take short breaks."),
    ("I started running in the mornings.", "Good for you! Morning runs are a fresh start to the day."),
    ("We adopted a cat last week.", "Wonderful! Cats bring a lot of joy to a home."),
    ("I am reading a book about history.", "Reading history is a great way to understand the world."),
]
QUESTIONS = [
    "How does a bicycle stay upright when it moves?",
    "Can you explain how bread rises in the oven?",
    "Why is the sky blue during the day?",
    "What are some good ways to remember new words?",
    "How do plants turn sunlight into food?",
    "What should I pack for a weekend trip to the mountains?",
    "How do bees make honey?",
    "Why do we have seasons on Earth?",
    "What is a healthy breakfast before a long day?",
    "How does a refrigerator keep food cold?",
    "Can you tell me how rainbows form?",
    "What are good tips for sleeping better at night?",
    "How do airplanes stay in the air?",
    "Why do leaves change colour in autumn?",
    "How can I make my small garden grow well?",
    "What makes a good cup of tea?",
]
ANGLES = [
    "what they feel", "what they could try next", "what they might forget", "a question to ask them",
    "a small plan for tomorrow", "what could go wrong", "a memory worth keeping", "a kind thing to say",
    "a useful fact", "what they need most", "a simple first step", "how to encourage them",
]
TOPICS = [
    "The person wants to cook a new dish for their sister's visit.",
    "The person is tired from work and wants to relax this weekend.",
    "The person is learning the guitar and wants to practise more.",
    "The person moved to a new city and wants to meet people.",
    "The person adopted a cat and wonders what it needs.",
    "The person runs in the mornings and wants to run farther.",
    "The person is reading about history and asks many questions.",
    "The person is planning a trip to the mountains.",
    "The person wants a healthier breakfast routine.",
    "The person is curious about how airplanes fly.",
]


#: distinct prompts available; no prompt is ever sent twice in a run, so no
#: contender can answer one from a whole-prompt cache (llama-server keeps
#: finished prompts in RAM) while another has to compute it
N_FG = 16 * 7
N_BG = 10 * 12 * 3
BG_PER_SCENARIO = N_BG // 4


def fg_messages(i: int) -> list[ChatMessage]:
    """Turn ``i`` (< N_FG): the instruction, two earlier exchanges, a new question."""
    a = i % len(HISTORY)
    b = (a + 1 + (i // len(HISTORY)) % (len(HISTORY) - 1)) % len(HISTORY)
    msgs = [ChatMessage("system", INSTRUCTION)]
    for k in (a, b):
        user, bot = HISTORY[k]
        msgs += [ChatMessage("user", user), ChatMessage("assistant", bot)]
    msgs.append(ChatMessage("user", QUESTIONS[i % len(QUESTIONS)]))
    return msgs


def bg_messages(i: int) -> list[ChatMessage]:
    """Thought ``i`` (< N_BG): a topic and an angle to think about."""
    topic, angle = TOPICS[i % len(TOPICS)], ANGLES[(i // len(TOPICS)) % len(ANGLES)]
    closing = ("", " Be brief.", " Use simple words.")[(i // (len(TOPICS) * len(ANGLES))) % 3]
    return [ChatMessage("system", THINKER), ChatMessage("user", f"{topic} Think about {angle}.{closing}")]


# -- the shared machine ----------------------------------------------------------

class CpuWatch:
    """How much of the cores *other* processes used while a contender ran.

    llama.cpp with 2 threads on 2 cores slows down several-fold when anything
    else runs, so a figure measured beside other work is reported as such.
    Other = all busy CPU time (incl. steal) minus this process and its children.
    """

    def __init__(self) -> None:
        self.hz = os.sysconf("SC_CLK_TCK")
        self.ncpu = os.cpu_count() or 1
        self.start()

    @staticmethod
    def _busy() -> int:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (f + [0] * 8)[:8]
        return user + nice + system + irq + softirq + steal

    @staticmethod
    def _ours() -> int:
        me, total = os.getpid(), 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(stat.parent.name) == me or int(fields[1]) == me:  # fields[1] is the parent pid
                total += int(fields[11]) + int(fields[12])  # utime + stime
        return total

    def start(self) -> None:
        self.t0, self.b0, self.o0 = time.monotonic(), self._busy(), self._ours()

    def other_pct(self) -> float:
        """Percent of all cores' time used by others since ``start``."""
        dt = time.monotonic() - self.t0
        other = (self._busy() - self.b0) - (self._ours() - self.o0)
        return max(0.0, 100.0 * other / (self.hz * self.ncpu * dt)) if dt > 0 else 0.0


# -- one stream's record ----------------------------------------------------------

@dataclass
class Record:
    """What one request's client saw: submit time and (time, token count) ticks."""

    t_submit: float = field(default_factory=now)
    ticks: list[tuple[float, int]] = field(default_factory=list)
    counted: int = 0
    text: str = ""
    done: bool = False

    def tick_to(self, t: float, total: int, text: str = "") -> None:
        """The stream has now produced ``total`` tokens (received at ``t``)."""
        if total > self.counted:
            self.ticks.append((t, total - self.counted))
            self.counted = total
        self.text += text

    def finish(self, t: float, total: int, text: str = "") -> None:
        self.tick_to(t, total, text)
        self.done = True

    @property
    def t_first(self) -> float | None:
        return self.ticks[0][0] if self.ticks else None

    @property
    def t_last(self) -> float | None:
        return self.ticks[-1][0] if self.ticks else None

    @property
    def ttft(self) -> float:
        assert self.t_first is not None
        return self.t_first - self.t_submit

    def in_window(self, t0: float, t1: float) -> int:
        return sum(n for t, n in self.ticks if t0 <= t <= t1)


class Contender(Protocol):
    name: str
    #: how many requests it serves at once (the warm-up waits for that many thinkers)
    concurrency: int
    #: prompt tokens it actually computed so far (the rest came from a prefix cache)
    prompt_computed: int

    async def start(self) -> None: ...
    async def run(self, prompt: list[int], max_tokens: int, rec: Record, foreground: bool) -> None: ...
    async def stop(self) -> None: ...


# -- contenders --------------------------------------------------------------------

class Shoal:
    """shoal's engine, driven through ``Engine.stream`` with token prompts."""

    name = "shoal"
    concurrency = 64

    @property
    def prompt_computed(self) -> int:
        return self.engine.stats.prompt_tokens

    def __init__(self, model_path: Path, threads: int, adapt_threads: bool = True) -> None:
        self.model_path, self.threads, self.adapt_threads = model_path, threads, adapt_threads

    async def start(self) -> None:
        def load() -> tuple[Model, Engine]:
            model = Model(self.model_path)
            config = EngineConfig(threads=self.threads, context=CTX, batch=BATCH, adapt_threads=self.adapt_threads)
            return model, Engine(model, config, name="bench")

        self.model, self.engine = await asyncio.to_thread(load)

    async def run(self, prompt: list[int], max_tokens: int, rec: Record, foreground: bool) -> None:
        req = GenerateRequest(
            messages=[],
            priority=Priority.FOREGROUND if foreground else Priority.THINKING,
            # greedy and nothing else: no top-k pass, no repetition penalty
            sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0, top_k=0, repeat_penalty=1.0),
        )
        async for chunk in self.engine.stream(req, prompt):
            t = now()
            if chunk.finish_reason is not None:
                rec.finish(t, chunk.completion_tokens or rec.counted, chunk.text)
            elif chunk.text:
                rec.tick_to(t, rec.counted + 1, chunk.text)

    async def stop(self) -> None:
        await asyncio.to_thread(self.engine.close)
        self.model.close()


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass(eq=False)
class _Job:
    prompt: list[int]
    max_tokens: int
    emit: Any
    cancel: threading.Event = field(default_factory=threading.Event)


class Fifo:
    """One ``llama_cpp.Llama``, one request at a time in arrival order."""

    name = "fifo"
    concurrency = 1

    def __init__(self, model_path: Path, threads: int) -> None:
        self.model_path, self.threads = model_path, threads
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.prompt_computed = 0

    async def start(self) -> None:
        from llama_cpp import Llama

        self.llm = await asyncio.to_thread(
            Llama, model_path=str(self.model_path), n_ctx=CTX, n_batch=BATCH, n_ubatch=BATCH,
            n_threads=self.threads, n_threads_batch=self.threads,
            # llama.cpp's default ("auto") turns flash attention on for the CPU;
            # Llama's own default is off. Same kernels as the other two.
            flash_attn=True, verbose=False,
        )
        self.worker = threading.Thread(target=self._serve, name="fifo-llama", daemon=True)
        self.worker.start()

    def completion(self, job: _Job) -> None:
        """One streamed create_completion; emits ("tok"|"end", tokens so far, text)."""
        llm, n_prompt = self.llm, len(job.prompt)
        # the Llama reuses the longest common prefix with what its KV holds
        held = llm.input_ids[: llm.n_tokens].tolist()
        self.prompt_computed += n_prompt - min(_common_prefix(held, job.prompt), n_prompt - 1)
        stream = llm.create_completion(job.prompt, max_tokens=job.max_tokens, temperature=0.0,
                                       repeat_penalty=1.0, stream=True)
        with contextlib.closing(stream):  # type: ignore[arg-type]
            for chunk in stream:
                if job.cancel.is_set():
                    break
                choice = chunk["choices"][0]  # type: ignore[index]
                reason = choice["finish_reason"]
                # the Llama evaluates a sampled token only when it asks for the next
                # one: after token i streams out, n_tokens = prompt + i - 1
                if reason is None:
                    job.emit(("tok", llm.n_tokens - n_prompt + 1, choice["text"]))
                else:
                    total = llm.n_tokens - n_prompt + (1 if reason == "length" else 0)
                    job.emit(("end", total, choice["text"]))
                    return
        job.emit(("end", -1, ""))

    def _serve(self) -> None:
        while (job := self.jobs.get()) is not None:
            if job.cancel.is_set():
                job.emit(("end", -1, ""))
                continue
            try:
                self.completion(job)
            except Exception as exc:  # report it to the waiting client
                job.emit(("error", exc, ""))

    async def run(self, prompt: list[int], max_tokens: int, rec: Record, foreground: bool) -> None:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[tuple[str, Any, str]] = asyncio.Queue()
        job = _Job(prompt, max_tokens, lambda item: loop.call_soon_threadsafe(items.put_nowait, item))
        self.jobs.put(job)
        try:
            while True:
                kind, n, text = await items.get()
                t = now()
                if kind == "error":
                    raise n
                if kind == "end":
                    rec.finish(t, max(n, rec.counted), text)
                    return
                rec.tick_to(t, n, text)
        finally:
            job.cancel.set()

    async def stop(self) -> None:
        self.jobs.put(None)
        await asyncio.to_thread(self.worker.join, 60)
        self.llm.close()
        del self.llm
        gc.collect()


class Server:
    """llama.cpp's ``llama-server --parallel N`` over loopback HTTP (/completion, SSE)."""

    name = "llama-server"
    concurrency = 64

    def __init__(self, binary: Path, model_path: Path, threads: int, parallel: int, eog: set[int]) -> None:
        self.binary, self.model_path, self.threads, self.parallel = binary, model_path, threads, parallel
        self.eog = eog  # end-of-generation ids: streamed as a token, not counted by the others
        self.prompt_computed = 0

    async def start(self) -> None:
        self.server = LlamaServer(self.binary, self.model_path, parallel=self.parallel, ctx_per_slot=CTX,
                                  threads=self.threads, batch=BATCH)
        await asyncio.to_thread(self.server.__enter__)
        self.http = httpx.AsyncClient(base_url=self.server.url, timeout=httpx.Timeout(600.0),
                                      limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

    async def run(self, prompt: list[int], max_tokens: int, rec: Record, foreground: bool) -> None:
        body = {
            "prompt": prompt, "n_predict": max_tokens, "stream": True, "cache_prompt": True,
            # greedy and nothing else (the default chain also runs top-k, top-p, min-p, ...)
            "temperature": 0.0, "samplers": ["temperature"], "repeat_penalty": 1.0,
        }
        async with self.http.stream("POST", "/completion", json=body) as r:
            if r.status_code != 200:
                raise RuntimeError(f"llama-server answered {r.status_code}: {(await r.aread())[:300]!r}")
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = json.loads(line[6:])
                t = now()
                n = rec.counted + sum(1 for tok in data.get("tokens", ()) if tok not in self.eog)
                if data.get("stop"):
                    self.prompt_computed += int((data.get("timings") or {}).get("prompt_n", 0))
                    rec.finish(t, n, data.get("content", ""))
                    return
                rec.tick_to(t, n, data.get("content", ""))

    async def stop(self) -> None:
        await self.http.aclose()
        await asyncio.to_thread(self.server.stop)


# -- the driver ------------------------------------------------------------------

@dataclass
class Workload:
    #: foreground prompts per scenario (by thinker count), the same for every contender
    fg: dict[int, list[list[int]]]
    #: where each scenario's thoughts start in ``bg``
    bg_start: dict[int, int]
    bg: list[list[int]]
    warmup: list[int]
    fg_tokens: int
    bg_tokens: int
    reps: int
    gaps: list[float]


@dataclass
class ScenarioResult:
    n_bg: int
    fg: list[Record]
    bg: list[Record]
    window: tuple[float, float]
    prompt_computed: int = 0

    @property
    def ttfts_ms(self) -> list[float]:
        return [r.ttft * 1000 for r in self.fg]

    @property
    def fg_decode_tok_s(self) -> float:
        """Foreground decode rate: tokens after the first over the time after the first."""
        toks = sum(r.counted - 1 for r in self.fg if r.counted > 1)
        secs = sum(r.t_last - r.t_first for r in self.fg if r.counted > 1)  # type: ignore[operator]
        return toks / secs if secs > 0 else float("nan")

    @property
    def aggregate_tok_s(self) -> float:
        t0, t1 = self.window
        n = sum(r.in_window(t0, t1) for r in self.fg + self.bg)
        return n / (t1 - t0)

    @property
    def bg_tokens(self) -> int:
        t0, t1 = self.window
        return sum(r.in_window(t0, t1) for r in self.bg)


async def scenario(c: Contender, n_bg: int, w: Workload, progress: Progress, task: Any) -> ScenarioResult:
    fg: list[Record] = []
    bg: list[Record] = []
    current: list[Record | None] = [None] * n_bg
    stopping = False
    thoughts = itertools.count(w.bg_start[n_bg])  # the same sequence for every contender

    async def thinker(i: int) -> None:
        while not stopping:
            rec = Record()
            current[i] = rec
            bg.append(rec)
            await c.run(w.bg[next(thoughts) % len(w.bg)], w.bg_tokens, rec, False)

    thinkers = [asyncio.create_task(thinker(i)) for i in range(n_bg)]
    computed0 = c.prompt_computed
    try:
        # the turn must arrive while the thinkers are generating, not queued
        want = min(n_bg, c.concurrency)
        async with asyncio.timeout(120):
            while sum(1 for r in current if r is not None and r.counted >= 2) < want:
                for t in thinkers:
                    if t.done():
                        t.result()  # a thinker failed: raise its error
                await asyncio.sleep(0.01)
        for rep in range(w.reps):
            await asyncio.sleep(w.gaps[rep])
            rec = Record()
            async with asyncio.timeout(600):
                await c.run(w.fg[n_bg][rep], w.fg_tokens, rec, True)
            fg.append(rec)
            progress.advance(task)
    finally:
        stopping = True
        for t in thinkers:
            t.cancel()
        results = await asyncio.gather(*thinkers, return_exceptions=True)
        await asyncio.sleep(0.5)  # let cancelled work drain before the next scenario
    for res in results:
        if isinstance(res, BaseException) and not isinstance(res, asyncio.CancelledError):
            raise res
    window = (fg[0].t_submit, max(r.t_last or r.t_submit for r in fg))
    return ScenarioResult(n_bg, fg, bg, window, c.prompt_computed - computed0)


async def run_contender(c: Contender, w: Workload, scenarios: list[int], progress: Progress,
                        cpu: CpuWatch) -> tuple[dict[int, ScenarioResult], float]:
    """Every scenario on one contender; returns the results and the others' CPU share."""
    task = progress.add_task(f"{c.name}: loading", total=w.reps * len(scenarios))
    await c.start()
    try:
        # warm-up (page in the weights, spin up the thread pools): not measured
        await c.run(w.warmup, 8, Record(), True)
        out = {}
        cpu.start()
        for n_bg in scenarios:
            progress.update(task, description=f"{c.name}: {n_bg} thinkers")
            out[n_bg] = await scenario(c, n_bg, w, progress, task)
        other = cpu.other_pct()  # before stop: a stopped child's CPU time is no longer ours
        progress.update(task, description=f"{c.name}: done")
        return out, other
    finally:
        await c.stop()


async def bare_loop(model_path: Path, threads: int, w: Workload, progress: Progress) -> dict[int, list[Record]]:
    """A plain ``Llama.create_completion`` loop over every scenario's foreground prompts."""
    fifo = Fifo(model_path, threads)
    task = progress.add_task("bare Llama loop", total=w.reps * len(w.fg))
    await fifo.start()
    records: dict[int, list[Record]] = {}
    try:
        def loop() -> None:
            fifo.completion(_Job(w.warmup, 8, lambda item: None))
            for n_bg, prompts in w.fg.items():
                for prompt in prompts:
                    rec = Record()

                    def emit(item: tuple[str, Any, str], rec: Record = rec) -> None:
                        kind, n, text = item
                        (rec.finish if kind == "end" else rec.tick_to)(now(), max(n, rec.counted), text)

                    fifo.completion(_Job(prompt, w.fg_tokens, emit))
                    records.setdefault(n_bg, []).append(rec)
                    progress.advance(task)

        await asyncio.to_thread(loop)
    finally:
        await fifo.stop()
    return records


# -- report ------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float:
    """Percentile with linear interpolation (p in 0..100)."""
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def r2(x: float) -> float:
    return round(x, 2)


def measure(a: argparse.Namespace, w: Workload, contenders: list[str], scenarios: list[int],
            binary: Path | None, model_path: Path, cpu: CpuWatch) -> dict[str, Any]:
    """One whole comparison (every contender, every scenario); returns the figures."""
    results: dict[str, dict[int, ScenarioResult]] = {}
    bare: dict[int, list[Record]] = {}
    other: dict[str, float] = {}
    columns = (TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    t_start = now()
    with Progress(*columns, console=console) as progress:
        for name in contenders:
            c: Contender
            if name == "shoal":
                c = Shoal(model_path, a.threads, adapt_threads=not a.fixed_threads)
            elif name == "fifo":
                cpu.start()
                bare = asyncio.run(bare_loop(model_path, a.threads, w, progress))
                other["bare"] = cpu.other_pct()
                c = Fifo(model_path, a.threads)
            else:
                assert binary is not None
                c = Server(binary, model_path, a.threads, parallel=max(scenarios) + 1, eog=eog)
            results[name], other[name] = asyncio.run(run_contender(c, w, scenarios, progress, cpu))
            gc.collect()
    elapsed = now() - t_start

    # greedy decoding of the same prompts: every contender should write the same replies
    def same_as_bare(s: ScenarioResult) -> str:
        if s.n_bg not in bare:
            return "-"
        return f"{sum(1 for x, y in zip(s.fg, bare[s.n_bg]) if x.text == y.text)}/{len(s.fg)}"

    table = Table("contender", "thinkers", "fg TTFT p50 ms", "fg TTFT p95 ms", "fg decode tok/s",
                  "aggregate tok/s", "bg tokens", "fg tokens/turn", "prompt tokens computed", "fg text = bare")
    for name, by_bg in results.items():
        for n_bg, s in by_bg.items():
            table.add_row(name, str(n_bg), f"{pct(s.ttfts_ms, 50):.0f}", f"{pct(s.ttfts_ms, 95):.0f}",
                          f"{s.fg_decode_tok_s:.1f}", f"{s.aggregate_tok_s:.1f}", str(s.bg_tokens),
                          f"{sum(r.counted for r in s.fg) / len(s.fg):.1f}", str(s.prompt_computed), same_as_bare(s))
    for n_bg, recs in bare.items():
        b = ScenarioResult(n_bg, recs, [], (0.0, 1.0))
        table.add_row("bare Llama", f"({n_bg})", f"{pct(b.ttfts_ms, 50):.0f}", f"{pct(b.ttfts_ms, 95):.0f}",
                      f"{b.fg_decode_tok_s:.1f}", "-", "-", f"{sum(r.counted for r in recs) / len(recs):.1f}", "-", "-")
    console.print(table)

    figures: dict[str, Any] = {}
    top = max(scenarios)
    sh = results.get("shoal", {})
    if sh:
        for n_bg, s in sh.items():
            figures[f"fg_ttft_p50_ms_{n_bg}bg"] = round(pct(s.ttfts_ms, 50), 1)
            figures[f"fg_ttft_p95_ms_{n_bg}bg"] = round(pct(s.ttfts_ms, 95), 1)
        figures[f"fg_decode_tok_s_{top}bg"] = r2(sh[top].fg_decode_tok_s)
        figures["aggregate_tok_s"] = r2(sh[top].aggregate_tok_s)
    if 0 in sh:
        figures["single_stream_tok_s"] = r2(sh[0].fg_decode_tok_s)
        if top:
            figures[f"ttft_p95_ratio_{top}bg"] = r2(pct(sh[top].ttfts_ms, 95) / pct(sh[0].ttfts_ms, 95))
    if "llama-server" in results:
        ls = results["llama-server"][top]
        figures["llama_server_tok_s"] = r2(ls.aggregate_tok_s)
        figures[f"llama_server_ttft_p95_ms_{top}bg"] = round(pct(ls.ttfts_ms, 95), 1)
        if sh:
            figures["aggregate_vs_llama_server"] = r2(sh[top].aggregate_tok_s / ls.aggregate_tok_s)
    if "fifo" in results:
        ff = results["fifo"][top]
        figures["fifo_tok_s"] = r2(ff.aggregate_tok_s)
        figures[f"fifo_ttft_p95_ms_{top}bg"] = round(pct(ff.ttfts_ms, 95), 1)
        if sh:
            figures["aggregate_vs_fifo"] = r2(sh[top].aggregate_tok_s / ff.aggregate_tok_s)
    if 0 in bare:
        # the same prompts as shoal's idle scenario
        bare_rate = ScenarioResult(0, bare[0], [], (0.0, 1.0)).fg_decode_tok_s
        figures["bare_decode_tok_s"] = r2(bare_rate)
        if 0 in sh:
            figures["single_stream_vs_bare"] = r2(sh[0].fg_decode_tok_s / bare_rate)
    if sh and top in bare:
        figures[f"fg_text_same_as_bare_{top}bg"] = same_as_bare(sh[top])

    goals = [
        (f"ttft_p95_ratio_{top}bg", "<=", 1.3),
        ("aggregate_vs_llama_server", ">=", 1.2),
        ("single_stream_vs_bare", ">=", 0.95),
    ]
    gt = Table("goal", "target", "measured", "met")
    met = 0
    for key, op, target in goals:
        if key in figures:
            ok = figures[key] <= target if op == "<=" else figures[key] >= target
            met += ok
            gt.add_row(key, f"{op} {target}", str(figures[key]), "[green]yes[/]" if ok else "[red]no[/]")
    console.print(gt)
    busy = max(other.values(), default=0.0)
    console.print("CPU used by other processes meanwhile: "
                  + ", ".join(f"{k} {v:.0f}%" for k, v in other.items()) + " of the cores")
    if busy > 5:
        console.print("[yellow]warning:[/] other work competed for the cores; llama.cpp slows down sharply when "
                      "oversubscribed, so these figures are noisy. Rerun on a quiet machine.")
    figures["goals_met"] = f"{met}/{sum(1 for k, _, _ in goals if k in figures)}"
    figures["reps"] = a.reps
    figures["other_cpu_pct_max"] = round(busy, 1)
    figures["seconds"] = round(elapsed, 1)
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description="Foreground latency and throughput under background thinkers.")
    p.add_argument("--reps", type=int, help="foreground turns per scenario (default 12, --quick 5)")
    p.add_argument("--fg-tokens", type=int, help="max_tokens of a foreground reply (default 64, --quick 48)")
    p.add_argument("--bg-tokens", type=int, help="max_tokens of a thought (default 96, --quick 64)")
    p.add_argument("--scenarios", default="0,1,2,4", help="background thinker counts")
    p.add_argument("--contenders", default="shoal,fifo,llama-server", help="which to run")
    p.add_argument("--threads", type=int, default=2, help="threads for every contender")
    p.add_argument("--seed", type=int, default=7, help="seeds the pauses between foreground turns")
    p.add_argument("--quick", action="store_true", help="smoke run: 5 turns, shorter replies")
    p.add_argument("--rebuild-server", action="store_true", help="rebuild llama-server even if cached")
    p.add_argument("--fixed-threads", action="store_true",
                   help="shoal always uses --threads (engine.adapt_threads = false), like the other contenders")
    p.add_argument("--runs", type=int, default=1,
                   help="run the whole comparison this many times; the last line holds the medians")
    a = p.parse_args()
    if a.runs < 1:
        p.error("--runs must be at least 1")
    for key, full, quick in (("reps", 12, 5), ("fg_tokens", 64, 48), ("bg_tokens", 96, 64)):
        if getattr(a, key) is None:
            setattr(a, key, quick if a.quick else full)
    scenarios = sorted({int(x) for x in a.scenarios.split(",")})
    contenders = [x.strip() for x in a.contenders.split(",") if x.strip()]
    unknown = set(contenders) - {"shoal", "fifo", "llama-server"}
    if unknown:
        p.error(f"unknown contenders: {', '.join(sorted(unknown))}")
    cpu = CpuWatch()
    model_path = default_model_path()

    binary = ensure_binary(console, rebuild=a.rebuild_server) if "llama-server" in contenders else None

    if a.reps * len(scenarios) + 1 > N_FG or len(scenarios) > 4:
        p.error(f"at most {N_FG - 1} foreground turns in all and 4 scenarios (distinct prompts run out)")

    # the same token prompts for everyone, rendered with the model's own template
    with console.status("tokenizing prompts ..."):
        vocab = Model(model_path)
        eog = set(vocab.eog_tokens)
        tok = lambda msgs: vocab.tokenize(chat.render(vocab.chat_template, msgs), add_special=True, parse_special=True)  # noqa: E731
        fg_all = [tok(fg_messages(i)) for i in range(N_FG)]
        bg = [tok(bg_messages(i)) for i in range(N_BG)]
        vocab.close()
    assert len({tuple(x) for x in fg_all}) == N_FG and len({tuple(x) for x in bg}) == N_BG
    fg = {n_bg: fg_all[k * a.reps : (k + 1) * a.reps] for k, n_bg in enumerate(scenarios)}
    bg_start = {n_bg: k * BG_PER_SCENARIO for k, n_bg in enumerate(scenarios)}
    rng = random.Random(a.seed)
    w = Workload(fg, bg_start, bg, fg_all[-1], a.fg_tokens, a.bg_tokens, a.reps,
                 [rng.uniform(0.1, 0.4) for _ in range(a.reps)])
    used = [x for prompts in fg.values() for x in prompts]
    console.print(
        f"model {model_path.name}; {a.threads} threads each; foreground prompts {min(map(len, used))}-"
        f"{max(map(len, used))} tokens, {a.fg_tokens} max_tokens; thoughts {min(map(len, bg))}-{max(map(len, bg))} "
        f"tokens, {a.bg_tokens} max_tokens; {a.reps} turns per scenario"
    )

    figures_by_run: list[dict[str, Any]] = []
    for run in range(a.runs):
        if a.runs > 1:
            console.rule(f"run {run + 1} of {a.runs}")
        figures = measure(a, w, contenders, scenarios, binary, model_path, cpu)
        figures_by_run.append(figures)
        print(" ".join(f"{k}: {v}" for k, v in figures.items()), flush=True)
    if a.runs > 1:
        print(" ".join(f"{k}: {v}" for k, v in median_figures(figures_by_run, max(scenarios)).items()))


def median_figures(runs: list[dict[str, Any]], top: int) -> dict[str, Any]:
    """The goal figures' medians over whole runs (each run measured every contender), then each run's values."""
    keys = ["aggregate_vs_llama_server", f"ttft_p95_ratio_{top}bg", "single_stream_vs_bare",
            "aggregate_tok_s", "llama_server_tok_s", "other_cpu_pct_max"]
    out: dict[str, Any] = {}
    for key in keys:
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        if not values:
            continue
        name = "aggregate_vs_llama_server_median" if key == "aggregate_vs_llama_server" else key
        out[name] = r2(statistics.median(values))
    goals = [("aggregate_vs_llama_server_median", ">=", 1.2), (f"ttft_p95_ratio_{top}bg", "<=", 1.3),
             ("single_stream_vs_bare", ">=", 0.95)]
    checked = [(k, op, t) for k, op, t in goals if k in out]
    met = sum(1 for k, op, t in checked if (out[k] <= t if op == "<=" else out[k] >= t))
    out["goals_met"] = f"{met}/{len(checked)}"
    out["runs"] = len(runs)
    out["aggregate_vs_llama_server_runs"] = ",".join(str(r.get("aggregate_vs_llama_server", "-")) for r in runs)
    return out


if __name__ == "__main__":
    main()
