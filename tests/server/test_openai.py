"""The OpenAI-compatible front, driven by the official ``openai`` package."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from .conftest import LiveServer, Site, auth, wait_for


def client_for(live: LiveServer, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key=token, max_retries=0, timeout=60)


def test_models_lists_the_bots_the_token_may_use(live: LiveServer, site: Site) -> None:
    with client_for(live, site.tokens["bob"]) as c:
        assert [m.id for m in c.models.list()] == ["conversation"]
    with client_for(live, site.tokens["root"]) as c:
        assert {m.id for m in c.models.list()} == {"conversation", "primary", "thinker", "memory"}


def test_a_streamed_completion_from_a_bot(live: LiveServer, site: Site) -> None:
    with client_for(live, site.tokens["bob"]) as c:
        stream = c.chat.completions.create(
            model="conversation", messages=[{"role": "user", "content": "Say hello to Leeds."}], stream=True
        )
        parts, finish = [], None
        for chunk in stream:
            delta = chunk.choices[0].delta.content
            if delta:
                parts.append(delta)
            finish = chunk.choices[0].finish_reason or finish
    assert "".join(parts).strip() and finish in ("stop", "length")


def test_a_non_streamed_completion_with_a_json_schema(live: LiveServer, site: Site) -> None:
    with client_for(live, site.tokens["bob"]) as c:
        out = c.chat.completions.create(
            model="conversation",
            messages=[{"role": "user", "content": "Ana lives in Porto. Give her city as JSON."}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "city", "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
            },
            max_tokens=60,
            temperature=0.0,  # greedy: a sampled 30-token answer was once cut inside the string
        )
    import json

    assert "city" in json.loads(out.choices[0].message.content or "")
    assert out.usage and out.usage.completion_tokens > 0


def test_bad_token_unknown_model_and_forbidden_bot_get_openai_style_errors(live: LiveServer, site: Site) -> None:
    with client_for(live, "shoal_wrong") as c:
        with pytest.raises(openai.AuthenticationError):
            c.models.list()
    with client_for(live, site.tokens["bob"]) as c:
        with pytest.raises(openai.NotFoundError) as e:
            c.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
        assert "/v1/models" in str(e.value)
        # bob may not chat with the thinker: it does not exist for him
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model="thinker", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="conversation", messages=[])


def test_a_client_that_leaves_mid_stream_cancels_the_generation(live: LiveServer, site: Site) -> None:
    engine = live.swarm.backends["local"].engine
    before = engine.stats.cancelled
    body = {
        "model": "conversation",
        "messages": [{"role": "user", "content": "Write a very long story about the sea."}],
        "stream": True,
        "max_tokens": 400,
    }
    with httpx.Client(base_url=live.url, timeout=60) as http:
        with http.stream("POST", "/v1/chat/completions", json=body, headers=auth(site.tokens["bob"])) as r:
            n = 0
            for line in r.iter_lines():
                if line.startswith("data:"):
                    n += 1
                if n >= 5:
                    break
    # the connection is closed; the engine must notice and stop
    wait_for(lambda: engine.stats.cancelled > before, timeout=20)
    wait_for(lambda: engine.active == 0, timeout=20)
