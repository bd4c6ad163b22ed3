"""/v1 as clients expect: tool calls (plain and streamed), n, seed, stop, usage, embeddings, completions — with the real ``openai`` package."""

from __future__ import annotations

import json

import numpy as np
import openai
import pytest

from .conftest import LiveServer, Site

CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression such as 17 * 23.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
    },
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
QUESTION = [{"role": "user", "content": "What is 17 times 23? Use the calculator."}]


def client_for(live: LiveServer, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key=token, max_retries=0, timeout=120)


def _answer_after(c: openai.OpenAI, call: object, result: str, stream: bool) -> str:
    messages = QUESTION + [
        {"role": "assistant", "content": None, "tool_calls": [call]},  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": call.id, "content": result},  # type: ignore[attr-defined]
    ]
    if not stream:
        out = c.chat.completions.create(model="conversation", messages=messages, tools=[CALCULATOR], max_tokens=40, temperature=0)
        assert out.choices[0].finish_reason in ("stop", "length") and not out.choices[0].message.tool_calls
        return out.choices[0].message.content or ""
    parts = []
    for chunk in c.chat.completions.create(model="conversation", messages=messages, tools=[CALCULATOR], max_tokens=40,
                                           temperature=0, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    return "".join(parts)


def test_a_chat_that_needs_the_calculator_gets_a_valid_tool_call_and_the_answer_uses_the_result(live: LiveServer, site: Site) -> None:
    with client_for(live, site.tokens["bob"]) as c:
        forced = c.chat.completions.create(model="conversation", messages=QUESTION, tools=[CALCULATOR, WEATHER],
                                           tool_choice={"type": "function", "function": {"name": "calculator"}})
        choice = forced.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        [call] = choice.message.tool_calls or []
        assert call.type == "function" and call.id.startswith("call_")
        # the grammar allowed only a call of the named function, valid for its schema
        assert call.function.name == "calculator" and isinstance(json.loads(call.function.arguments)["expression"], str)
        assert forced.usage and forced.usage.completion_tokens > 0
        assert "391" in _answer_after(c, call, "391", stream=False)


AUTO_SUMS = [("What is 17 * 23?", 391), ("What is 17 times 23?", 391), ("How much is 12 + 30?", 42)]


@pytest.mark.parametrize("stream", [False, True])
def test_auto_mode_calls_the_calculator_for_a_sum_instead_of_answering_it_in_words(live: LiveServer, site: Site, stream: bool) -> None:
    from shoal.tools.builtin import evaluate

    with client_for(live, site.tokens["bob"]) as c:
        for question, value in AUTO_SUMS:  # tool_choice left to its default, "auto"
            messages = [{"role": "user", "content": question}]
            if stream:
                with c.chat.completions.stream(model="conversation", messages=messages, tools=[WEATHER, CALCULATOR]) as s:
                    out = s.get_final_completion()
            else:
                out = c.chat.completions.create(model="conversation", messages=messages, tools=[WEATHER, CALCULATOR])
            choice = out.choices[0]
            assert choice.finish_reason == "tool_calls", (question, choice.message.content)
            [call] = choice.message.tool_calls or []
            assert call.function.name == "calculator", question
            assert evaluate(json.loads(call.function.arguments)["expression"]) == value, (question, call.function.arguments)
            if not stream:  # the client runs it and sends the result: the answer uses it (not the model's own sum)
                followup = c.chat.completions.create(model="conversation", tools=[WEATHER, CALCULATOR], max_tokens=40, temperature=0,
                                                     messages=messages + [{"role": "assistant", "content": None, "tool_calls": [call]},
                                                                          {"role": "tool", "tool_call_id": call.id, "content": str(value)}])
                assert not followup.choices[0].message.tool_calls and str(value) in (followup.choices[0].message.content or ""), question
        # a function shoal's rules know nothing of is still the model's choice: a call valid for its schema, or words
        out = c.chat.completions.create(model="conversation", messages=[{"role": "user", "content": "Is it raining in Leeds?"}],
                                        tools=[WEATHER], max_tokens=16)
        for call in out.choices[0].message.tool_calls or []:
            assert call.function.name == "weather" and isinstance(json.loads(call.function.arguments)["city"], str)


@pytest.mark.parametrize("stream", [False, True])
def test_the_answer_after_a_tool_result_always_says_the_result(live: LiveServer, site: Site, stream: bool) -> None:
    from shoal.server import openai_tools

    call = {"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": '{"expression": "17 * 23"}'}}
    messages = [{"role": "user", "content": "What is 17 * 23?"}, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": '{"expression": "17 * 23", "result": 391}'}]
    before = sum(openai_tools.ANSWERS.values())
    with client_for(live, site.tokens["bob"]) as c:
        if stream:
            text = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
                model="conversation", messages=messages, tools=[CALCULATOR], max_tokens=40, temperature=0, stream=True) if ch.choices)
        else:
            text = c.chat.completions.create(model="conversation", messages=messages, tools=[CALCULATOR], max_tokens=40,
                                             temperature=0).choices[0].message.content or ""
    # the model's words when they hold 391, else its retry's, else the result said plainly — never its own sum
    assert "391" in text, text
    assert sum(openai_tools.ANSWERS.values()) == before + 1


def test_streamed_tool_calls_assemble_as_the_sdk_expects(live: LiveServer, site: Site) -> None:
    with client_for(live, site.tokens["bob"]) as c:
        stream = c.chat.completions.create(model="conversation", messages=QUESTION, tools=[CALCULATOR], stream=True,
                                           tool_choice="required", stream_options={"include_usage": True})
        name, arguments, call_id, finish, usage = "", "", "", None, None
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            if not chunk.choices:
                continue
            for tc in chunk.choices[0].delta.tool_calls or []:
                assert tc.index == 0
                call_id = tc.id or call_id
                if tc.function and tc.function.name:
                    name = tc.function.name
                if tc.function and tc.function.arguments:
                    arguments += tc.function.arguments
            finish = chunk.choices[0].finish_reason or finish
        assert (name, finish) == ("calculator", "tool_calls") and call_id.startswith("call_")
        assert isinstance(json.loads(arguments)["expression"], str)
        assert usage is not None and usage.total_tokens > 0
        # the SDK's own accumulator agrees
        with c.chat.completions.stream(model="conversation", messages=QUESTION, tools=[CALCULATOR], tool_choice="required") as s:
            final = s.get_final_completion()
        [call] = final.choices[0].message.tool_calls or []
        assert call.function.name == "calculator" and json.loads(call.function.arguments)["expression"]
        assert "391" in _answer_after(c, call, "391", stream=True)


def test_bad_tool_definitions_and_choices_are_openai_style_400s(live: LiveServer, site: Site) -> None:
    with client_for(live, site.tokens["bob"]) as c:
        bad_schema = {"type": "function", "function": {"name": "x", "parameters": {"type": "object", "properties": {"a": {"type": 7}}}}}
        with pytest.raises(openai.BadRequestError, match="not a valid JSON schema"):
            c.chat.completions.create(model="conversation", messages=QUESTION, tools=[bad_schema])
        with pytest.raises(openai.BadRequestError, match="not in tools"):
            c.chat.completions.create(model="conversation", messages=QUESTION, tools=[CALCULATOR],
                                      tool_choice={"type": "function", "function": {"name": "rm_rf"}})
        with pytest.raises(openai.BadRequestError, match="listed twice"):
            c.chat.completions.create(model="conversation", messages=QUESTION, tools=[CALCULATOR, CALCULATOR])
        # tool_choice "none": an answer in words, tools or not
        out = c.chat.completions.create(model="conversation", messages=QUESTION, tools=[CALCULATOR], tool_choice="none", max_tokens=8)
        assert out.choices[0].message.tool_calls is None and out.choices[0].message.content


def test_n_seed_stop_and_usage(live: LiveServer, site: Site) -> None:
    with client_for(live, site.tokens["bob"]) as c:
        out = c.chat.completions.create(model="conversation", messages=[{"role": "user", "content": "Name a colour."}],
                                        n=2, seed=7, temperature=0.9, max_tokens=6)
        assert [ch.index for ch in out.choices] == [0, 1]
        assert out.usage and out.usage.completion_tokens >= 2 and out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
        again = c.chat.completions.create(model="conversation", messages=[{"role": "user", "content": "Name a colour."}],
                                          seed=7, temperature=0.9, max_tokens=6)
        assert again.choices[0].message.content == out.choices[0].message.content  # same seed, same text
        stopped = c.chat.completions.create(model="conversation", messages=[{"role": "user", "content": "Count: 1, 2, 3, 4, 5, 6"}],
                                            stop=[","], max_tokens=12, temperature=0)
        assert "," not in (stopped.choices[0].message.content or "")
        indices = set()
        for chunk in c.chat.completions.create(model="conversation", messages=[{"role": "user", "content": "Hi"}], n=2,
                                               max_tokens=4, stream=True):
            indices |= {ch.index for ch in chunk.choices}
        assert indices == {0, 1}


def test_embeddings_are_the_vectors_memory_uses(live: LiveServer, site: Site) -> None:
    import asyncio

    texts = ["I keep bees in Porto.", "The weather is rainy."]
    with client_for(live, site.tokens["bob"]) as c:
        out = c.embeddings.create(model="all-minilm-l6-v2", input=texts)  # the SDK asks for base64 and decodes it
        floats = c.embeddings.create(model="all-minilm-l6-v2", input=texts[0], encoding_format="float")
    got = np.array([d.embedding for d in out.data], dtype=np.float32)
    assert got.shape == (2, 384) and out.usage.prompt_tokens > 0
    from shoal.memory.embed import Embedder

    expected = np.asarray(asyncio.run(Embedder().embed(texts)), dtype=np.float32)  # memory's own embedder
    assert np.allclose(got, expected, atol=1e-6)
    assert np.allclose(np.array(floats.data[0].embedding), expected[0], atol=1e-6)
    with client_for(live, site.tokens["bob"]) as c:
        with pytest.raises(openai.BadRequestError, match="token arrays"):
            c.embeddings.create(model="all-minilm-l6-v2", input=[[1, 2, 3]])
    with client_for(live, "shoal_wrong") as c:
        with pytest.raises(openai.AuthenticationError):
            c.embeddings.create(model="all-minilm-l6-v2", input="x")


def test_legacy_completions_plain_and_streamed(live: LiveServer, site: Site) -> None:
    with client_for(live, site.tokens["bob"]) as c:
        out = c.completions.create(model="conversation", prompt="Say hi.", max_tokens=8, temperature=0)
        assert out.object == "text_completion" and out.choices[0].text and out.usage and out.usage.completion_tokens > 0
        parts = [ch.choices[0].text for ch in c.completions.create(model="conversation", prompt="Say hi.", max_tokens=8,
                                                                    temperature=0, stream=True) if ch.choices]
        assert "".join(parts) == out.choices[0].text  # greedy: the same text either way
        with pytest.raises(openai.NotFoundError):
            c.completions.create(model="primary", prompt="hi", max_tokens=4)  # bob may not use the primary


def test_litellm_as_a_client_of_shoals_v1(live: LiveServer, site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of its price list at import
    import litellm

    common = {"api_base": f"{live.url}/v1", "api_key": site.tokens["bob"], "timeout": 120, "num_retries": 0}
    out = litellm.completion(model="openai/conversation", messages=QUESTION, tools=[CALCULATOR],
                             tool_choice={"type": "function", "function": {"name": "calculator"}}, **common)
    [call] = out.choices[0].message.tool_calls
    assert call.function.name == "calculator" and json.loads(call.function.arguments)["expression"]
    emb = litellm.embedding(model="openai/all-minilm-l6-v2", input=["bees"], **common)
    assert len(emb.data[0]["embedding"]) == 384
    with pytest.raises(litellm.AuthenticationError):
        litellm.completion(model="openai/conversation", messages=QUESTION, **{**common, "api_key": "shoal_wrong"})
