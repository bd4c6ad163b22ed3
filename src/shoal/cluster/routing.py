"""Routing strategies: in which order to try the servers that can serve a request.

Each strategy orders the eligible members (healthy, circuit closed, serving
the model); the cluster takes the first with a free admission slot. A
preferred server (the bot's server, or one named in the request) goes first
when it is eligible.

- ``affinity`` (default): servers with the model warm, least loaded first;
  then the others, most free memory first (a load will be needed there).
- ``least-loaded``: lowest in-flight share first, warm before cold on a tie.
- ``round-robin``: in turn.
- ``memory``: most free memory first (unknown capacity last), then load.

Ties go to servers listing the model in ``preferred_models``, then to the
order of ``[[servers]]`` in shoal.toml.
"""

from __future__ import annotations

from typing import Callable, Sequence

from shoal.cluster.member import Member

Strategy = Callable[[Sequence[Member], str | None], list[Member]]


def _free(m: Member) -> float:
    free = m.free_bytes
    return float("-inf") if free is None else float(free)


def affinity(members: Sequence[Member], model: str | None) -> list[Member]:
    warm = [m for m in members if m.is_warm(model)]
    cold = [m for m in members if not m.is_warm(model)]
    warm.sort(key=lambda m: (not m.prefers(model), m.load, m.position))
    cold.sort(key=lambda m: (not m.prefers(model), -_free(m), m.load, m.position))
    return warm + cold


def least_loaded(members: Sequence[Member], model: str | None) -> list[Member]:
    return sorted(members, key=lambda m: (m.load, not m.is_warm(model), not m.prefers(model), m.position))


def memory(members: Sequence[Member], model: str | None) -> list[Member]:
    return sorted(members, key=lambda m: (-_free(m), not m.prefers(model), m.load, m.position))


class RoundRobin:
    """In turn: the server after the one chosen last (by position in shoal.toml)."""

    def __init__(self) -> None:
        self.last = -1

    def __call__(self, members: Sequence[Member], model: str | None) -> list[Member]:
        return sorted(members, key=lambda m: (m.position <= self.last, m.position))

    def assigned(self, member: Member) -> None:
        self.last = member.position


def strategy(name: str) -> Strategy:
    if name == "affinity":
        return affinity
    if name == "least-loaded":
        return least_loaded
    if name == "memory":
        return memory
    if name == "round-robin":
        return RoundRobin()
    raise ValueError(f"unknown routing strategy {name!r}")


def rank(strategy_fn: Strategy, members: Sequence[Member], model: str | None, prefer: str | None) -> list[Member]:
    ordered = strategy_fn(members, model)
    if prefer:
        first = [m for m in ordered if m.name == prefer]
        ordered = first + [m for m in ordered if m.name != prefer]
    return ordered
