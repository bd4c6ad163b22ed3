"""Every error shoal raises on purpose.

Third-party errors are translated at the boundary (``raise ... from exc``);
messages say what went wrong *and how to fix it*.

    ShoalError
    ├── ConfigError                 bad shoal.toml / settings (file, line, field)
    ├── ModelError                  a model cannot be found or loaded
    ├── BackendError                a backend failed to generate
    │   ├── BackendUnavailable      cannot reach / health check failed
    │   ├── BackendProtocolError    the server answered something unexpected
    │   └── GenerationCancelled     the caller cancelled (not a failure)
    ├── CapacityError               a bounded queue or pool is full (fail fast)
    │   └── DiskFull                the disk holding SHOAL_HOME is full (edge journal)
    ├── ContextOverflow             prompt + max_tokens exceed the context
    ├── NotFound                    unknown conversation, bot, memory, ...
    ├── PermissionDenied            authenticated but not allowed
    ├── AuthError                   missing or wrong credentials
    └── BadInput                    malformed frame, oversized message, ...
"""

from __future__ import annotations


class ShoalError(Exception):
    """Base of every error shoal raises on purpose."""

    #: a short, stable machine-readable code (used in error frames and JSON)
    code = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(ShoalError):
    """A configuration file or setting is invalid.

    ``path``, ``line`` and ``field`` locate the problem when known.
    """

    code = "config"

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = ""
        if path:
            where = str(path)
            if line:
                where += f":{line}"
            where += ": "
        if field:
            where += f"field '{field}': "
        super().__init__(where + message, hint=hint)
        self.path = path
        self.line = line
        self.field = field


class ModelError(ShoalError):
    code = "model"


class BackendError(ShoalError):
    code = "backend"


class BackendUnavailable(BackendError):
    code = "backend_unavailable"


class BackendProtocolError(BackendError):
    code = "backend_protocol"


class GenerationCancelled(BackendError):
    """The request was cancelled by its owner; not a failure."""

    code = "cancelled"


class CapacityError(ShoalError):
    code = "capacity"


class ContextOverflow(ShoalError):
    code = "context_overflow"


class NotFound(ShoalError):
    code = "not_found"


class PermissionDenied(ShoalError):
    code = "forbidden"


class AuthError(ShoalError):
    code = "unauthorized"


class BadInput(ShoalError):
    code = "bad_input"


class DiskFull(CapacityError):
    """The disk is full: nothing new can be stored until space is freed (nothing stored is lost)."""

    code = "disk_full"
