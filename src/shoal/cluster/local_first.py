"""The local-first router (seed 004): simple turns to the small local model, complex ones to a bigger one.

``[routing.local_first]`` names two servers. For each turn of a conversation
bot it routes, ``LocalFirst.choose`` scores the turn (``complexity.assess``:
no model call, tens of microseconds) and picks ``big`` for a complex turn,
``local`` for a simple one — and ``local`` whenever ``big`` cannot take work
now (down, disabled, its circuit open). ``LocalFirst.stream`` generates on the
chosen server; when ``big`` fails before its first token, the reply is written
by ``local`` instead (whatever the failure: unreachable, an error status,
its queue full, an unknown model), and the choice records why. The conversation bot
publishes every choice as a ``route.model`` event, which the headspace shows.

Each server is reached through its cluster view (``ctx.backends[name]``), so the
cluster's own queue, retries and mid-stream failover still apply underneath.
The local model keeps the bot's LoRA adapter (the tuned small model); the big
one gets none (an adapter belongs to the base model it was trained on).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import AsyncIterator

from shoal.backends.base import Backend
from shoal.cluster.complexity import Assessment, assess
from shoal.config import LocalFirstConfig
from shoal.errors import CapacityError, GenerationCancelled, NotFound, ShoalError
from shoal.types import Chunk, GenerateRequest

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Choice:
    """Where one reply goes and why; ``fallback`` says why it is not where the turn asked for."""

    server: str
    model: str | None
    assessment: Assessment
    wanted: str
    fallback: str = ""
    #: the server that wrote the first token (set while streaming)
    served_by: str = ""

    def describe(self) -> str:
        """One line for the headspace: "complex (score 4: about code, 2 questions) → big"."""
        a = self.assessment
        why = f"{a.label} (score {a.score:g}{': ' + ', '.join(a.reasons) if a.reasons else ''})"
        if self.fallback:
            return f"{why} → wanted {self.wanted}, but {self.fallback}: {self.server} answers"
        return f"{why} → {self.server}"


class LocalFirst:
    def __init__(self, settings: LocalFirstConfig, backends: Mapping[str, Backend]) -> None:
        self.settings = settings
        self.backends = backends

    def choose(self, text: str, previous: str = "", *, bot_model: str | None = None) -> Choice:
        """The server for a turn saying ``text`` (``previous``: the person's turn before it)."""
        s = self.settings
        a = assess(text, previous, threshold=s.threshold)
        wanted = s.big if a.complex else s.local
        local_model = s.local_model or bot_model or None
        if wanted == s.local:
            return Choice(s.local, local_model, a, wanted)
        why = self._unavailable(s.big)
        if why is not None:
            return Choice(s.local, local_model, a, wanted, fallback=f"{s.big} is {why}")
        return Choice(s.big, s.big_model or None, a, wanted)

    def _unavailable(self, server: str) -> str | None:
        backend = self.backends.get(server)
        if backend is None:
            return "not in the cluster"
        check = getattr(backend, "unavailable", None)
        return check() if check is not None else None  # a backend without a health view: assume it is up

    async def stream(self, choice: Choice, req: GenerateRequest) -> AsyncIterator[Chunk]:
        """Generate ``req`` where ``choice`` says; the local model takes over if big fails before its first token."""
        local = self.settings.local
        first = True
        try:
            # aclosing: a reader that stops early (a guard, a new turn) closes the upstream request at once
            async with aclosing(self._on(choice.server, choice.model, req)) as chunks:  # type: ignore[type-var]
                async for chunk in chunks:
                    if first and chunk.text:
                        first = False
                        self._served(choice, chunk.served_by or choice.server)
                        self._count(choice)
                    yield chunk
            return
        except GenerationCancelled:
            raise
        except ShoalError as exc:
            if not first or choice.server == local:
                raise  # mid-stream: the cluster's failover already had its chance
            failed, busy = choice.server, isinstance(exc, CapacityError)
            log.warning("local-first: %s did not answer (%s); the local model answers", failed, exc)
        choice.server, choice.model = local, self.settings.local_model or _bot_model(req)
        choice.fallback = f"{failed} is busy (its queue is full)" if busy else f"{failed} failed before answering"
        async with aclosing(self._on(local, choice.model, req)) as chunks:  # type: ignore[type-var]
            async for chunk in chunks:
                if first and chunk.text:
                    first = False
                    choice.served_by = chunk.served_by or local
                    self._count(choice)
                yield chunk

    def _on(self, server: str, model: str | None, req: GenerateRequest) -> AsyncIterator[Chunk]:
        backend = self.backends.get(server)
        if backend is None:
            raise NotFound(
                f"[routing.local_first] names server '{server}', which is not in the cluster",
                hint="`shoal cluster status` lists the servers; fix local/big in shoal.toml",
            )
        adapter = req.adapter if server == self.settings.local else ""
        return backend.stream(dataclasses.replace(req, model=model, adapter=adapter))

    def _count(self, choice: Choice) -> None:
        """One more reply placed (``shoal_cluster_local_first_total``), in the cluster behind the views."""
        cluster = getattr(self.backends.get(choice.served_by), "cluster", None)
        if cluster is not None:
            cluster.metrics.local_first.inc(choice.wanted, choice.served_by)

    @staticmethod
    def _served(choice: Choice, server: str) -> None:
        choice.served_by = server
        if server != choice.server:
            # the cluster moved it: the chosen server failed, another serving the same model took over
            choice.fallback = choice.fallback or f"{choice.server} failed before answering"
            choice.server = server


def _bot_model(req: GenerateRequest) -> str | None:
    return req.model if req.model not in (None, "", "default") else None
