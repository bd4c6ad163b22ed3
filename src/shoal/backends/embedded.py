"""The embedded backend: a GGUF model run in-process by shoal's own engine."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from pathlib import Path
from typing import AsyncIterator, ClassVar

from shoal.backends.residency import Continuation, Residency, ResidentModel
from shoal.config import EngineConfig, ServerConfig
from shoal.engine import chat
from shoal.engine.llama import Model, default_model_path
from shoal.engine.scheduler import Engine
from shoal.errors import BackendError, ModelError, NotFound
from shoal.types import Chunk, GenerateRequest


class EmbeddedBackend:
    """Serves one GGUF model through an ``Engine`` (loaded on first use)."""

    supports_grammar: ClassVar[bool] = True
    supports_embeddings: ClassVar[bool] = False
    supports_lora: ClassVar[bool] = True  # GenerateRequest.adapter (engine/lora.py)

    def __init__(
        self,
        name: str = "local",
        *,
        model_path: str | Path | None = None,
        model_name: str | None = None,
        engine: EngineConfig | None = None,
        chat_format: str | None = None,
    ) -> None:
        self.name = name
        self.chat_format = chat_format
        self._model_path = Path(model_path).expanduser() if model_path else None
        self.model_name = model_name or (self._model_path.stem if self._model_path else "smollm2-135m")
        self.engine_config = engine or EngineConfig()
        self._engine: Engine | None = None
        self._model: Model | None = None
        self._loading = asyncio.Lock()

    @classmethod
    def from_config(cls, server: ServerConfig, engine: EngineConfig) -> "EmbeddedBackend":
        return cls(
            server.name,
            model_path=server.model_path or None,
            model_name=server.default_model,
            engine=engine,
            chat_format=server.chat_format,
        )

    @property
    def model_path(self) -> Path:
        return self._model_path or default_model_path()

    @property
    def engine(self) -> Engine | None:
        return self._engine

    async def start(self) -> Engine:
        """Load the model and start the engine thread (idempotent)."""
        if self._engine is not None:
            return self._engine
        async with self._loading:
            if self._engine is None:
                path = self.model_path

                def load() -> tuple[Model, Engine]:
                    model = Model(path)
                    try:
                        model.template_for(self.chat_format)  # no template and no chat_format: say so now
                    except ModelError:
                        model.close()
                        raise
                    return model, Engine(model, self.engine_config, name=self.name)

                self._model, self._engine = await asyncio.to_thread(load)
        return self._engine

    async def models(self) -> list[str]:
        return [self.model_name]

    # -- control plane (see shoal.backends.residency): one model, loaded on first use
    fixed_model: ClassVar[bool] = True
    can_load: ClassVar[bool] = False
    continuation: ClassVar[Continuation] = "native"

    @property
    def default_concurrency(self) -> int:
        return self.engine_config.max_sequences

    def canonical(self, model: str) -> str:
        return model

    async def residency(self, timeout: float) -> Residency:
        try:
            size: int | None = self.model_path.stat().st_size
        except OSError:
            size = None
        engine = self._engine
        loaded = {self.model_name: ResidentModel(self.model_name, size)} if engine is not None else {}
        return Residency(
            loaded=loaded,
            available={self.model_name: size},
            slots=self.engine_config.max_sequences,
            busy=engine.active if engine is not None else None,
            software="embedded",
        )

    async def load(self, model: str) -> None:
        await self.start()

    async def unload(self, model: str) -> None:
        raise BackendError(f"the embedded server '{self.name}' keeps its model loaded")

    def _check_model(self, req: GenerateRequest) -> None:
        if req.model and req.model not in (self.model_name, "default"):
            raise NotFound(
                f"server '{self.name}' serves '{self.model_name}', not '{req.model}'",
                hint="set the bot's model to the server's model, or point the bot at another server",
            )

    def render(self, req: GenerateRequest) -> list[int]:
        assert self._model is not None
        text = chat.render(self._model.template_for(self.chat_format), req.messages) + req.prefix
        return self._model.tokenize(text, add_special=True, parse_special=True)

    async def stream(self, req: GenerateRequest) -> AsyncIterator[Chunk]:
        self._check_model(req)
        engine = await self.start()
        prompt = self.render(req)
        # aclosing: a consumer that stops early must cancel the sequence now,
        # not when the garbage collector finalises the inner generator
        async with aclosing(engine.stream(req, prompt)) as chunks:
            async for chunk in chunks:
                chunk.served_by = self.name
                yield chunk

    async def aclose(self) -> None:
        engine, model = self._engine, self._model
        self._engine = self._model = None
        if engine is not None:
            await asyncio.to_thread(engine.close)
        if model is not None:
            model.close()
