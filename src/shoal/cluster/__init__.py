"""The inference cluster: many model servers (and the embedded engine) behaving as one.

See docs/cluster.md. ``Cluster`` is a ``Backend``; ``Cluster.view(server)``
is the backend for a bot whose server is ``server`` (routing prefers it).
"""

from __future__ import annotations

from shoal.cluster.core import Cluster, ClusterView
from shoal.cluster.queue import QueueFull

__all__ = ["Cluster", "ClusterView", "QueueFull"]
