"""The Ollama-compatible API, driven by the official ``ollama`` package against a real server."""

from __future__ import annotations

from typing import Iterator

import httpx
import ollama
import pytest
from fastapi.testclient import TestClient

from .conftest import LiveServer, Site, auth

OLLAMA_PATHS = {("GET", "/api/tags"), ("GET", "/api/ps"), ("GET", "/api/version"), ("POST", "/api/show"),
                ("POST", "/api/chat"), ("POST", "/api/generate"), ("POST", "/api/embed")}


_OPEN: list[ollama.Client] = []


def client_for(live: LiveServer, token: str | None) -> ollama.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    c = ollama.Client(host=live.url, headers=headers, timeout=120)
    _OPEN.append(c)
    return c


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def test_an_ollama_client_lists_the_bots_it_may_use_and_chats_with_one_streamed(live: LiveServer, site: Site) -> None:
    bob = client_for(live, site.tokens["bob"])
    assert [m.model for m in bob.list().models] == ["conversation"]
    root = client_for(live, site.tokens["root"])
    assert {m.model for m in root.list().models} == {"conversation", "primary", "thinker", "memory"}
    assert [m.model for m in bob.ps().models] == ["conversation"]
    parts, last = [], None
    for part in bob.chat(model="conversation", messages=[{"role": "user", "content": "Say hello to Leeds."}], stream=True,
                         options={"num_predict": 12, "temperature": 0}):
        parts.append(part.message.content or "")
        last = part
    assert "".join(parts).strip() and last is not None and last.done and last.done_reason in ("stop", "length")
    assert (last.eval_count or 0) > 0 and (last.prompt_eval_count or 0) > 0
    whole = bob.chat(model="conversation", messages=[{"role": "user", "content": "Say hello to Leeds."}],
                     options={"num_predict": 12, "temperature": 0})
    assert whole.message.content == "".join(parts)  # greedy: streamed or not, the same reply


def test_generate_embed_show_and_json_format(live: LiveServer, site: Site) -> None:
    bob = client_for(live, site.tokens["bob"])
    out = bob.generate(model="conversation", prompt="Name a fruit.", options={"num_predict": 8, "temperature": 0})
    assert out.response and out.done
    streamed = "".join(p.response for p in bob.generate(model="conversation", prompt="Name a fruit.", stream=True,
                                                        options={"num_predict": 8, "temperature": 0}))
    assert streamed == out.response
    import json

    js = bob.chat(model="conversation", messages=[{"role": "user", "content": "Ana lives in Porto. Her city as JSON."}],
                  format={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                  options={"num_predict": 48, "temperature": 0})  # sampled, 24 tokens sometimes ended inside the string
    assert "city" in json.loads(js.message.content or "")
    emb = bob.embed(model="all-minilm-l6-v2", input=["bees", "rain"])
    assert len(emb.embeddings) == 2 and len(emb.embeddings[0]) == 384
    assert bob.show("conversation").capabilities == ["completion", "tools"]
    with pytest.raises(ollama.ResponseError) as e:
        bob.show("primary")  # bob may not chat with the primary: it does not exist for him
    assert e.value.status_code == 404


def test_an_ollama_client_gets_tool_calls(live: LiveServer, site: Site) -> None:
    from shoal.tools.builtin import evaluate

    bob = client_for(live, site.tokens["bob"])
    calculator = {"type": "function", "function": {"name": "calculator", "description": "Evaluate arithmetic such as 17 * 23.",
                  "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}
    question = [{"role": "user", "content": "What is 17 * 23?"}]  # the sum a probe of the old "auto" got in words
    out = bob.chat(model="conversation", messages=question, tools=[calculator], stream=False)
    [call] = out.message.tool_calls or []  # Ollama has no tool_choice: "auto", and a sum is the calculator's
    assert call.function.name == "calculator" and evaluate(call.function.arguments["expression"]) == 391
    streamed = [c for part in bob.chat(model="conversation", messages=question, tools=[calculator], stream=True)
                for c in part.message.tool_calls or []]
    assert [(c.function.name, evaluate(c.function.arguments["expression"])) for c in streamed] == [("calculator", 391)]
    # the client runs it and sends the result: the answer is in words and uses it
    answer = bob.chat(model="conversation", stream=False, tools=[calculator], options={"num_predict": 40, "temperature": 0},
                      messages=question + [{"role": "assistant", "content": "", "tool_calls": [call.model_dump()]},
                                           {"role": "tool", "content": "391", "tool_name": "calculator"}])
    assert not answer.message.tool_calls and "391" in (answer.message.content or "")


def test_wrong_tokens_unknown_bots_and_bad_input_are_clear_errors(live: LiveServer, site: Site) -> None:
    with pytest.raises(ollama.ResponseError) as e:
        client_for(live, "shoal_wrong").list()
    assert e.value.status_code == 401
    with pytest.raises(ollama.ResponseError) as e:
        client_for(live, None).chat(model="conversation", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 401
    bob = client_for(live, site.tokens["bob"])
    for model in ("no-such-bot", "primary"):
        with pytest.raises(ollama.ResponseError) as e:
            bob.chat(model=model, messages=[{"role": "user", "content": "hi"}], stream=False)
        assert e.value.status_code == 404 and "does not exist" in e.value.error
    r = httpx.post(f"{live.url}/api/embed", json={"input": []}, headers=auth(site.tokens["bob"]))
    assert r.status_code == 400 and isinstance(r.json()["error"], str)


def _all_routes(routes: list) -> list:  # type: ignore[type-arg]
    out = []
    for r in routes:
        inner = getattr(r, "original_router", None)  # an included router (FastAPI keeps them whole)
        out += _all_routes(inner.routes) if inner is not None else [r]
    return out


def test_ollama_paths_do_not_clash_with_shoals_own_api(client: TestClient) -> None:
    """Each Ollama path is served by exactly one route, and shoal's /api routes are all still there."""
    routes = _all_routes(client.app.routes)  # type: ignore[attr-defined]
    for method, path in OLLAMA_PATHS:
        owners = [r for r in routes if getattr(r, "path", None) == path and method in (getattr(r, "methods", None) or ())]
        assert len(owners) == 1, (method, path, owners)
        assert owners[0].endpoint.__module__ == "shoal.server.ollama_compat"
    paths = {getattr(r, "path", None) for r in routes}
    for shoal_path in ("/api/me", "/api/bots", "/api/memories", "/api/nodes", "/api/tools", "/api/conversations"):
        assert shoal_path in paths, shoal_path
