"""Which sqlite3 shoal uses, and the extensions it loads.

Vector search needs ``sqlite-vec``, a loadable extension. Some Python builds
(this project's machines among them) compile the stdlib ``sqlite3`` without
extension loading; then shoal uses ``pysqlite3`` (the ``pysqlite3-binary``
wheel), which can, and says so once in the log.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def module() -> Any:
    import sqlite3

    if _can_load_extensions(sqlite3):
        return sqlite3
    try:
        import pysqlite3.dbapi2 as pysqlite3  # type: ignore[import-not-found]
    except ImportError:
        log.warning(
            "this Python's sqlite3 cannot load extensions and pysqlite3 is not installed: "
            "vector search is unavailable (pip install pysqlite3-binary)"
        )
        return sqlite3
    log.info("stdlib sqlite3 cannot load extensions; using pysqlite3 %s", pysqlite3.sqlite_version)
    return pysqlite3


def _can_load_extensions(mod: Any) -> bool:
    try:
        conn = mod.connect(":memory:")
    except Exception:
        return False
    try:
        conn.enable_load_extension(True)
        return True
    except (AttributeError, Exception):
        return False
    finally:
        conn.close()


@lru_cache(maxsize=1)
def vec_available() -> bool:
    try:
        import sqlite_vec  # noqa: F401
    except ImportError:
        return False
    return _can_load_extensions(module())


def load_extensions(conn: Any) -> None:
    """Load sqlite-vec into ``conn`` when it can be loaded."""
    if not vec_available():
        return
    import sqlite_vec

    conn.enable_load_extension(True)
    try:
        sqlite_vec.load(conn)
    finally:
        conn.enable_load_extension(False)
