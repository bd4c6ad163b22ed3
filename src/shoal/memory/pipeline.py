"""Ingesting one message into memory: the raw note, then grounded facts.

The memory bot and ``bench/memory_locomo.py`` both call ``ingest`` — the
benchmark measures exactly what runs in the swarm.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Literal

from shoal.backends.base import Backend, generate
from shoal.errors import ShoalError
from shoal.memory.extract import (
    FACT_SCHEMA,
    Candidate,
    Fact,
    extract,
    extraction_messages,
    is_personal,
    parse_model_output,
    statements,
)
from shoal.memory.store import Memory, MemoryStore, NewMemory, note_text
from shoal.types import ChatMessage, GenerateRequest, Priority, SamplingParams

log = logging.getLogger(__name__)

Extractor = Callable[[str], Awaitable[list[Candidate]]]
#: (instruction, message) → the (role, content) pairs of an extraction prompt
Prompt = Callable[[str, str], list[tuple[str, str]]]
Consent = Literal["always", "ask", "never"]


@dataclass
class Ingested:
    raw: Memory | None = None
    facts: list[tuple[Memory, Memory | None]] = field(default_factory=list)
    proposed: list[dict] = field(default_factory=list)  # type: ignore[type-arg]
    rejected: list[tuple[Candidate, str]] = field(default_factory=list)


@dataclass
class ModelExtractor:
    """Facts proposed by a model under a JSON schema; one retry on invalid output, then none.

    With an extraction ``adapter`` (a GGUF LoRA file, or a function giving the file at each call
    so that promoting one takes effect at the next message) the model is asked with the adapter's
    own ``adapter_prompt`` (``learn.extraction``); without one, with the few-shot prompt.
    A message that states nothing (only questions and requests) is not sent: ``extract()`` would
    reject every candidate of it.
    """

    backend: Backend
    model: str | None = None
    instruction: str = ""
    max_tokens: int = 128
    priority: Priority = Priority.MEMORY
    owner: str = "memory"
    adapter: str | Callable[[], str] = ""
    adapter_prompt: Prompt | None = None
    invalid: int = 0
    dropped: int = 0

    def prompt(self) -> tuple[str, Prompt]:
        """The adapter file to use now ("" = none) and the prompt that goes with it."""
        path = self.adapter() if callable(self.adapter) else self.adapter
        if path and self.adapter_prompt is not None:
            return path, self.adapter_prompt
        return "", extraction_messages

    async def __call__(self, text: str) -> list[Candidate]:
        if not statements(text):
            return []
        adapter, prompt = self.prompt()
        messages = [ChatMessage(role, content) for role, content in prompt(self.instruction, text)]  # type: ignore[arg-type]
        for _attempt in range(2):
            req = GenerateRequest(
                messages=messages,
                model=self.model,
                sampling=SamplingParams(max_tokens=self.max_tokens, temperature=0.0),
                json_schema=FACT_SCHEMA,
                priority=self.priority,
                owner=self.owner,
                adapter=adapter,
            )
            try:
                out = await generate(self.backend, req)
            except ShoalError as exc:
                log.warning("fact extraction failed: %s", exc)
                return []
            try:
                return parse_model_output(out.text)
            except (ValueError, json.JSONDecodeError) as exc:
                self.invalid += 1
                log.info("invalid extraction output (%s): %.200r", exc, out.text)
        self.dropped += 1
        return []


async def ingest(
    store: MemoryStore,
    *,
    user_id: str,
    conversation_id: str | None,
    message_id: str,
    text: str,
    speaker: str | None = None,
    previous: Memory | None = None,
    created_at: float | None = None,
    extractor: Extractor | None = None,
    consent: Consent = "always",
    bot: str | None = None,
    facts_about_speaker: bool = True,
) -> Ingested:
    """Store the raw note of one message and the facts grounded in it, as far as ``consent`` allows.

    ``previous`` is the raw note of the message before this one in the same
    conversation: each note is indexed with its neighbours as context (so
    "That's great! Where?" is findable by what it answers), but the context
    is not part of the note and does not count as its source.

    Consent governs every memory written from the message, the raw note
    included (it holds the whole message, so it would make a refused fact
    recallable):

    * ``always`` — the note and the facts are stored;
    * ``never`` — nothing is stored;
    * ``ask`` — facts and the note wait for the user's yes (``proposed``);
      a message with no fact is noted only when it says nothing about the
      speaker (no "I", "my", ...), so nothing personal is kept unasked.
    """
    out = Ingested()
    if consent == "never":
        return out
    note = note_text(text, speaker)
    facts: list[Fact] = []
    if facts_about_speaker:
        candidates = await extractor(text) if extractor is not None else []
        facts, out.rejected = extract(text, candidates)
    if consent == "ask" and (facts or is_personal(text)):
        if facts:
            out.proposed = await store.propose(
                user_id, conversation_id or "", facts, sources=[message_id], bot=bot, note=note
            )
        return out
    items = [
        NewMemory(
            user_id, "raw", note, sources=[message_id], method="message", bot=bot,
            conversation_id=conversation_id, created_at=created_at,
            before=previous.text if previous else None, previous=previous.id if previous else None, speaker=speaker,
        )
    ]
    # facts stated in the same clause are one memory with several attributes
    by_clause: dict[str, list[Fact]] = {}
    for f in facts:
        by_clause.setdefault(f.text, []).append(f)
    for clause, group in by_clause.items():
        items.append(
            NewMemory(
                user_id, "fact", note_text(clause, speaker), group[0].attribute, group[0].value,
                [message_id], "+".join(dict.fromkeys(f.method for f in group)), bot, conversation_id, created_at,
                facts=[(f.attribute, f.value) for f in group], speaker=speaker,
            )
        )
    stored = await store.add_many(items)
    out.raw = stored[0][0]
    out.facts = stored[1:]
    return out
