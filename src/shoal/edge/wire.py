"""The sync wire format: many journal entries per JetStream message, columnar and compressed.

A batch covers a range of one node's sequence numbers. Its boundaries are
deterministic — ranges are cut at multiples of the batch size (``edge.batch``)
— so the same range re-sent after a reconnect is the same bytes under the same
``Nats-Msg-Id`` (``<uid>:<first>-<last>``), which JetStream drops within its
duplicate window; beyond the window the hub's ``PRIMARY KEY (node, seq)``
drops it. (After the hub *pulls* a range — it lacks it and nothing of it is
on the way — the node adds a resend count to the ids: the stream may have
lost the batch inside its window, and the same id would be dropped again.)

Layout: ``b"SHJ1"``, a little-endian u32 header length, a JSON header
(node, uid, first, last, count, the first hlc, ranges pruned on the node
before they were sent), then one zlib stream of columns:

    hlc      int64 deltas (the first is 0), byte-shuffled
    kind     uint8
    sensor   uint16 (0: none)
    value    float64 (NaN: none), byte-shuffled
    wall     int64: device wall ms minus hlc ms (0: the same), byte-shuffled
    seq      int64 deltas, only when the range has holes
    bodies   JSON: [[index, body-json-string], ...] for entries that have one

Byte shuffling puts the same byte of every value together: the high bytes
of timestamp deltas and of sensor values repeat, so zlib folds them away.
Sensor readings travel at about 4–5 bytes each (bench/edge_sync.py measures it).
"""

from __future__ import annotations

import itertools
import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

MAGIC = b"SHJ1"
#: zlib level 1: 6 costs 70 % more CPU for 5 % fewer bytes on sensor data
LEVEL = 1


class WireError(ValueError):
    """A batch that cannot be decoded (corrupt, truncated, another version)."""


@dataclass(slots=True)
class Batch:
    node: str
    uid: str
    first: int
    last: int
    seq: np.ndarray
    hlc: np.ndarray
    kind: np.ndarray
    sensor: np.ndarray
    value: np.ndarray
    wall: np.ndarray
    bodies: dict[int, str] = field(default_factory=dict)
    #: ranges in [first, last] that the node no longer has (retention removed them unsent)
    pruned: list[tuple[int, int]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(self.seq.shape[0])

    @property
    def msg_id(self) -> str:
        return msg_id(self.uid, self.first, self.last)


def msg_id(uid: str, first: int, last: int) -> str:
    return f"{uid}:{first}-{last}"


def chunk_end(seq: int, size: int) -> int:
    """The last seq of the fixed-size chunk that ``seq`` falls in (chunks start at 1)."""
    return ((seq - 1) // size + 1) * size


def _shuffle(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a.view(np.uint8).reshape(-1, a.itemsize).T).tobytes()


def _unshuffle(b: bytes, dtype: Any, n: int) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    raw = np.frombuffer(b, dtype=np.uint8)
    if raw.shape[0] != n * size:
        raise WireError("a column has the wrong length")
    return np.ascontiguousarray(raw.reshape(size, n).T).view(dtype).reshape(n)


def encode(node: str, uid: str, first: int, last: int, rows: Sequence[Sequence[Any]]) -> bytes:
    """Rows ``(seq, hlc, kind, sensor, value, wall, body)`` of the range [first, last] → one message."""
    n = len(rows)
    if n == 0:  # the whole range was removed on the node before it could be sent
        header = {"v": 1, "node": node, "uid": uid, "first": first, "last": last, "n": 0, "pruned": [[first, last]]}
        head = json.dumps(header, separators=(",", ":")).encode()
        return MAGIC + struct.pack("<I", len(head)) + head
    seq = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
    hlc = np.fromiter((r[1] for r in rows), dtype=np.int64, count=n)
    kind = np.fromiter((r[2] for r in rows), dtype=np.uint8, count=n)
    sensor = np.fromiter((r[3] or 0 for r in rows), dtype=np.uint16, count=n)
    value = np.fromiter((np.nan if r[4] is None else r[4] for r in rows), dtype=np.float64, count=n)
    wall = np.fromiter((0 if r[5] is None else r[5] - (r[1] >> 16) for r in rows), dtype=np.int64, count=n)
    bodies = [[i, r[6]] for i, r in enumerate(rows) if r[6] is not None]
    contiguous = int(seq[-1] - seq[0]) == n - 1 and int(seq[0]) == first and int(seq[-1]) == last
    pruned = [] if contiguous else _holes(seq, first, last)
    header = {
        "v": 1, "node": node, "uid": uid, "first": first, "last": last, "n": n,
        "hlc0": int(hlc[0]), "seq0": int(seq[0]), "pruned": pruned, "holes": not contiguous,
    }
    parts = [
        _shuffle(np.diff(hlc, prepend=hlc[:1])),
        kind.tobytes(),
        sensor.tobytes(),
        _shuffle(value),
        _shuffle(wall),
    ]
    if not contiguous:
        parts.append(_shuffle(np.diff(seq, prepend=seq[:1])))
    parts.append(json.dumps(bodies, separators=(",", ":"), ensure_ascii=False).encode())
    sizes = [len(p) for p in parts]
    header["sizes"] = sizes
    head = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + zlib.compress(b"".join(parts), LEVEL)


def _holes(seq: np.ndarray, first: int, last: int) -> list[list[int]]:
    out: list[list[int]] = []
    gaps = np.nonzero(np.diff(seq) > 1)[0]
    if int(seq[0]) > first:
        out.append([first, int(seq[0]) - 1])
    for i in gaps:
        out.append([int(seq[i]) + 1, int(seq[i + 1]) - 1])
    if int(seq[-1]) < last:
        out.append([int(seq[-1]) + 1, last])
    return out


def decode(data: bytes) -> Batch:
    """A message → a Batch; ``WireError`` when it is not one."""
    try:
        if data[:4] != MAGIC:
            raise WireError("not a shoal journal batch (bad magic)")
        (hlen,) = struct.unpack_from("<I", data, 4)
        header = json.loads(data[8 : 8 + hlen])
        if header.get("v") != 1:
            raise WireError(f"batch format v{header.get('v')} is newer than this hub understands; upgrade shoal")
        if int(header["n"]) == 0:
            empty_i, empty_f = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
            return Batch(
                node=str(header["node"]), uid=str(header["uid"]), first=int(header["first"]), last=int(header["last"]),
                seq=empty_i, hlc=empty_i, kind=np.zeros(0, dtype=np.uint8), sensor=np.zeros(0, dtype=np.uint16),
                value=empty_f, wall=empty_i, pruned=[(int(a), int(b)) for a, b in header["pruned"]],
            )
        body = zlib.decompress(data[8 + hlen :])
        n = int(header["n"])
        sizes = header["sizes"]
        offs = np.cumsum([0, *sizes])
        part = [body[offs[i] : offs[i + 1]] for i in range(len(sizes))]
        hlc = np.cumsum(_unshuffle(part[0], np.int64, n)) + int(header["hlc0"])
        kind = np.frombuffer(part[1], dtype=np.uint8)
        sensor = np.frombuffer(part[2], dtype=np.uint16)
        value = _unshuffle(part[3], np.float64, n)
        wall = _unshuffle(part[4], np.int64, n)
        if header["holes"]:
            seq = np.cumsum(_unshuffle(part[5], np.int64, n)) + int(header["seq0"])
        else:
            seq = np.arange(int(header["first"]), int(header["last"]) + 1, dtype=np.int64)
        if kind.shape[0] != n or sensor.shape[0] != n or seq.shape[0] != n:
            raise WireError("a column has the wrong length")
        bodies = {int(i): str(b) for i, b in json.loads(part[-1])}
    except WireError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, zlib.error, struct.error) as exc:
        raise WireError(f"corrupt batch: {exc}") from exc
    return Batch(
        node=str(header["node"]), uid=str(header["uid"]), first=int(header["first"]), last=int(header["last"]),
        seq=seq, hlc=hlc, kind=kind, sensor=sensor, value=value, wall=wall, bodies=bodies,
        pruned=[(int(a), int(b)) for a, b in header.get("pruned", [])],
    )


def rows_of(b: Batch, node: int | None = None) -> list[tuple[Any, ...]]:
    """The batch back as rows ``(seq, hlc, kind, sensor, value, wall, body)``, each led by ``node`` if given.

    Readings-only batches are the bulk of a backlog: the None fix-ups run only
    where a column has them.
    """
    n = b.count
    hlc = b.hlc.tolist()
    values: list[Any] = b.value.tolist()
    for i in np.nonzero(np.isnan(b.value))[0].tolist():
        values[i] = None
    sensors: list[Any] = b.sensor.tolist()
    for i in np.nonzero(b.sensor == 0)[0].tolist():
        sensors[i] = None
    walls: list[Any] = [None] * n
    for i in np.nonzero(b.wall)[0].tolist():
        walls[i] = (hlc[i] >> 16) + int(b.wall[i])
    bodies: list[Any] = [None] * n
    for i, body in b.bodies.items():
        bodies[i] = body
    cols = (b.seq.tolist(), hlc, b.kind.tolist(), sensors, values, walls, bodies)
    if node is not None:
        return list(zip(itertools.repeat(node, n), *cols))
    return list(zip(*cols))
