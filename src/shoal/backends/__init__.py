"""Backends: where generations come from.

Built-ins register exactly as an outside plugin would, through
``register_backend(kind, factory)``; a factory takes the server's config
and the engine config and returns a ``Backend``.
"""

from __future__ import annotations

from typing import Callable

from shoal.backends.base import Backend, generate
from shoal.config import EngineConfig, ServerConfig
from shoal.errors import ConfigError

Factory = Callable[[ServerConfig, EngineConfig], Backend]

_FACTORIES: dict[str, Factory] = {}


def register_backend(kind: str, factory: Factory) -> None:
    _FACTORIES[kind] = factory


def create_backend(server: ServerConfig, engine: EngineConfig) -> Backend:
    _register_builtins()
    try:
        factory = _FACTORIES[server.kind]
    except KeyError:
        raise ConfigError(
            f"no backend for server kind '{server.kind}'",
            field=f"servers.{server.name}.kind",
            hint=f"known kinds: {', '.join(sorted(_FACTORIES))}",
        ) from None
    return factory(server, engine)


def _register_builtins() -> None:
    if _FACTORIES:
        return
    from shoal.backends.embedded import EmbeddedBackend
    from shoal.backends.llamacpp import LlamaCppBackend
    from shoal.backends.lmstudio import LMStudioBackend
    from shoal.backends.ollama import OllamaBackend
    from shoal.backends.openai_http import OpenAIHTTPBackend
    from shoal.backends.vllm import VLLMBackend

    register_backend("embedded", EmbeddedBackend.from_config)
    register_backend("llamacpp", LlamaCppBackend.from_config)
    register_backend("ollama", OllamaBackend.from_config)
    register_backend("lmstudio", LMStudioBackend.from_config)
    register_backend("vllm", VLLMBackend.from_config)
    register_backend("openai", OpenAIHTTPBackend.from_config)


__all__ = ["Backend", "create_backend", "generate", "register_backend"]
