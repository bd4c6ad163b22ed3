"""Render chat messages into a prompt with the model's own Jinja template."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Sequence

from shoal.types import ChatMessage

# Text that would let a message forge a turn boundary in ChatML-style templates.
_FORGERIES = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|start_header_id|>")


def _scrub(text: str) -> str:
    for marker in _FORGERIES:
        text = text.replace(marker, "")
    return text


@lru_cache(maxsize=8)
def _compile(template: str):  # type: ignore[no-untyped-def]
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        loader=jinja2.BaseLoader(),
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[jinja2.ext.loopcontrols],
    )

    def raise_exception(message: str) -> None:
        raise ValueError(f"chat template error: {message}")

    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render(
    template: str,
    messages: Sequence[ChatMessage],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    """The prompt text for ``messages``.

    Consecutive system messages are merged into one: several small-model
    templates only honour a single leading system message.
    """
    merged: list[dict[str, str]] = []
    for m in messages:
        content = _scrub(m.content)
        if merged and m.role == "system" and merged[-1]["role"] == "system":
            merged[-1]["content"] += "\n" + content
        else:
            merged.append({"role": m.role, "content": content})
    return _compile(template).render(
        messages=merged,
        add_generation_prompt=add_generation_prompt,
        bos_token=bos_token,
        eos_token=eos_token,
    )
