"""Who may do what with a bot (the rules live in ``shoal.runtime.access``; bots apply them too)."""

from __future__ import annotations

from shoal.runtime.access import Capability, allowed, can, require, visible_event

__all__ = ["Capability", "allowed", "can", "require", "visible_event"]
