"""Reply guards and reply cleaning on real sentences (no model: these are the checks themselves)."""

from __future__ import annotations

import pytest

from shoal.bots.conversation import clean_reply, trim_thought
from shoal.bots.guards import ReplyGuard, fallback, language


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("Ingredients: two eggs, flour and milk.", "Ingredients: two eggs, flour and milk."),
        ("Note: the shop closes at six.", "Note: the shop closes at six."),
        ("Assistant: Hello there!", "Hello there!"),
        ("shoal: Hi Bob.", "Hi Bob."),
        ("conversation: Sure.", "Sure."),
        ("Sure thing!\nUser: and then?", "Sure thing!"),
    ],
)
def test_only_a_speaker_label_is_stripped_from_a_reply(raw: str, cleaned: str) -> None:
    assert clean_reply(raw, ("conversation",)) == cleaned


@pytest.mark.parametrize(
    "text, lang",
    [
        ("Olá! Que bom, o Porto é uma cidade linda e tem muitos restaurantes.", "pt"),
        ("That's great! Porto is a beautiful city with lots of good food.", "en"),
        ("Bonjour, je m'appelle Marie et j'habite à Lyon depuis deux ans.", "fr"),
        ("¿Qué tal? Me llamo Lucía y vivo en Sevilla con mi familia.", "es"),
        ("Ich wohne seit drei Jahren in Berlin und arbeite als Lehrerin.", "de"),
    ],
)
def test_the_language_of_a_sentence_is_told(text: str, lang: str) -> None:
    assert language(text)[0] == lang


def test_a_reply_in_another_language_than_the_users_fails() -> None:
    g = ReplyGuard("I'm moving to Porto next month, any tips?")
    assert g.lang == "en"
    bad = g.language("Que bom! O Porto é uma cidade linda e tem muita comida boa para provar.")
    assert not bad.ok and "Portuguese" in bad.detail
    assert g.language("Porto is lovely! Try the francesinha and walk along the river.").ok


def test_an_echo_of_the_users_message_fails() -> None:
    g = ReplyGuard("Hi! I'm Bob and I live in Leeds, I work as a nurse.")
    assert not g.echo("Hi! I'm Bob and I live in Leeds, I work as a nurse.").ok
    assert g.echo("Nice to meet you, Bob! How is life in Leeds?").ok


def test_claiming_the_users_facts_or_an_invented_life_fails() -> None:
    g = ReplyGuard("I'm Bob, a nurse in Leeds.", user_values=["Bob", "nurse", "Leeds"])
    theirs = g.identity("Oh nice! I live in Leeds too.")
    assert not theirs.ok and "Leeds" in theirs.detail
    invented = g.identity("I remember that I used to work in a hospital.")
    assert not invented.ok and "invents" in invented.detail
    assert g.identity("You live in Leeds and work as a nurse — lovely!").ok
    assert g.identity("I'm shoal, happy to help you plan.").ok


def test_a_loop_is_caught_while_streaming_and_the_start_is_kept() -> None:
    g = ReplyGuard("Give me a shopping list for spaghetti.")
    text = "Here you go:\n200g spaghetti\n"
    assert g.feed(text) is None
    looped = text + "200g spaghetti\n200g spaghetti\n"
    v = g.feed(looped)
    assert v is not None and v.check == "loop" and not v.ok
    assert v.keep is not None and v.keep.count("200g spaghetti") == 1


def test_the_fallback_is_short_and_in_the_users_language() -> None:
    assert fallback("Olá, chamo-me Rui", "pt", "Rui", question=False).startswith("Prazer")
    assert "Bob" in fallback("I'm Bob", "en", "Bob", question=False)
    assert fallback("what?", None, None, question=True).endswith("?")


def test_a_long_thought_is_quoted_whole_or_cut_at_a_sentence() -> None:
    long = "They want a trip. " * 40
    cut = trim_thought(long, 120)
    assert cut.endswith("…") and len(cut) <= 124 and cut.rstrip(" …").endswith(".")
    assert trim_thought("Short thought.") == "Short thought."


def test_a_quoted_thought_is_not_the_bots_own_claim() -> None:
    from shoal.bots.guards import ReplyGuard

    g = ReplyGuard("what are you thinking about?", user_values=["9 March"])
    quoted = 'thinker (my last thought): “User: My birthday is on 9 March, and I\'m turning 40”'
    assert g.identity(quoted).ok
    assert not g.identity("My birthday is on 9 March.").ok
