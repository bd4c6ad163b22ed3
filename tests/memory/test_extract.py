"""Fact extraction: rules, model output validation, grounding in the message."""

from __future__ import annotations

import pytest

from shoal.memory.extract import Candidate, clauses, extract, ground, parse_model_output, rule_facts
from shoal.memory.store import keywords


@pytest.mark.parametrize(
    "message, expected",
    [
        ("Hi! My name is Bob and I live in Leeds.", {("name", "Bob"), ("location", "Leeds")}),
        ("I moved to York last month", {("location", "York")}),
        ("I'm Alice.", {("name", "Alice")}),
        ("I am 34 years old and I love cooking pasta.", {("age", "34"), ("likes", "cooking pasta")}),
        ("I have a dog named Max, and my wife is called Anna.", {("pet", "dog Max"), ("family", "wife Anna")}),
        ("I work as a nurse at St Mary's.", {("job", "nurse"), ("employer", "St Mary's")}),
        ("I'm tired today", set()),
        ("What's the weather like?", set()),
    ],
)
def test_rules_find_what_people_say_about_themselves(message: str, expected: set[tuple[str, str]]) -> None:
    facts, _ = extract(message)
    assert {(f.attribute, f.value) for f in facts} == expected


def test_every_fact_text_is_a_clause_of_the_message() -> None:
    message = "Hi! My name is Bob and I live in Leeds."
    facts, _ = extract(message)
    for f in facts:
        assert f.text in message
        assert keywords(f.text) <= keywords(message)
    assert {f.text for f in facts} == {"My name is Bob", "I live in Leeds."}


def test_a_model_fact_whose_words_are_not_in_the_message_is_rejected() -> None:
    message = "My name is Bob and I live in Leeds."
    result = ground(Candidate("location", "Lisle", "model"), message)
    assert isinstance(result, str) and "lisle" in result


def test_grounding_accepts_inflected_forms() -> None:
    result = ground(Candidate("hobby", "hike", "model"), "I go hiking every weekend.")
    assert not isinstance(result, str) and result.text == "I go hiking every weekend."


def test_model_and_rule_facts_are_merged_without_duplicates() -> None:
    message = "Hi! My name is Bob and I live in Leeds."
    model = [Candidate("name", "Bob", "model"), Candidate("location", "Paris", "model"), Candidate("likes", "Leeds", "model")]
    facts, rejected = extract(message, model)
    assert [(f.attribute, f.value, f.method) for f in facts] == [("name", "Bob", "rule"), ("location", "Leeds", "rule")]
    reasons = {c.value: why for c, why in rejected}
    assert "liking" in reasons["Leeds"]  # living somewhere is not liking it; Paris: the rule's place wins


def test_a_model_fact_must_have_the_shape_of_its_kind() -> None:
    message = "pottery keeps me sane at weekends, and I'm so tired of work"
    model = [Candidate("hobby", "pottery", "model"), Candidate("job", "tired", "model"), Candidate("location", "work", "model"),
             Candidate("name", "pottery keeps me sane", "model"), Candidate("other", "tired", "model")]
    facts, rejected = extract(message, model)
    assert [(f.attribute, f.value) for f in facts] == [("hobby", "pottery")]
    assert {c.value for c, _ in rejected} == {"tired", "work", "pottery keeps me sane"}


@pytest.mark.parametrize(
    "text", ['{"facts": [{"attribute": "colour", "value": "red"}]}', '{"fact": []}', "[]", '{"facts": [1]}', "not json"]
)
def test_invalid_model_output_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_model_output(text)


def test_clauses_split_on_sentences_and_joined_statements() -> None:
    assert clauses("Hi! My name is Bob and I live in Leeds.") == ["Hi!", "My name is Bob", "I live in Leeds."]


def test_names_that_are_really_adjectives_are_skipped() -> None:
    assert rule_facts("I'm Happy to help") == [] or all(c.attribute != "name" for c in rule_facts("I'm so happy"))


def test_a_like_or_dislike_must_match_the_messages_polarity() -> None:
    assert isinstance(ground(Candidate("dislikes", "beans", "model"), "I want tomatoes and beans."), str)
    assert not isinstance(ground(Candidate("dislikes", "beans", "model"), "I really hate beans."), str)
    assert isinstance(ground(Candidate("likes", "beans", "model"), "I don't like beans at all."), str)
    assert not isinstance(ground(Candidate("likes", "beans", "model"), "Beans are my favourite."), str)


@pytest.mark.parametrize(
    "message, expected",
    [
        ("I moved from Leeds to York in March.", {("location", "York")}),
        ("I'm allergic to peanuts and shellfish.", {("allergy", "peanuts"), ("allergy", "shellfish")}),
        ("My birthday is on 3 May.", {("birthday", "3 May")}),
        ("my kids are Mia, Leo and Zoe", {("family", "child Mia"), ("family", "child Leo"), ("family", "child Zoe")}),
        ("I don't drink coffee, only tea.", {("dislikes", "coffee"), ("likes", "tea")}),
        ("I'm Sarah, a nurse in Bristol.", {("name", "Sarah"), ("job", "nurse"), ("location", "Bristol")}),
        ("I'm moving to Porto next month, any tips?", {("plan", "moving to Porto")}),
    ],
)
def test_the_kinds_people_state_about_themselves_are_found(message: str, expected: set[tuple[str, str]]) -> None:
    facts, _ = extract(message)
    assert {(f.attribute, f.value) for f in facts} == expected


@pytest.mark.parametrize(
    "message",
    [
        "Can you find me a recipe with spiders?",
        "What should I name my cat?",
        "tell me about Lisbon, I might move there",
        "If I were a pilot I'd fly to Tokyo.",
        "someone on reddit wrote 'I'm 45 and I still live with my parents'",
    ],
)
def test_questions_requests_hypotheticals_and_quotes_give_no_facts(message: str) -> None:
    facts, _ = extract(message, [Candidate("likes", "spiders", "model"), Candidate("pet", "cat", "model")])
    assert facts == []


def test_a_model_fact_must_be_about_the_speaker() -> None:
    facts, rejected = extract("My sister lives in Paris.", [Candidate("location", "Paris", "model")])
    assert ("location", "Paris") not in {(f.attribute, f.value) for f in facts}
    assert any(c.value == "Paris" and "not about the user" in why for c, why in rejected)
    facts, _ = extract("Hi, I'm Bob.", [Candidate("family", "Bob", "model")])
    assert [(f.attribute, f.value) for f in facts] == [("name", "Bob")]


@pytest.mark.parametrize(
    "message, expected",
    [
        # the other languages shoal answers in (sentences not in bench/data/quality)
        ("Bom dia, chamo-me Tiago e vivo em Braga.", {("name", "Tiago"), ("location", "Braga")}),
        ("Me llamo Lucía y vivo en Valencia, tengo 29 años.", {("name", "Lucía"), ("location", "Valencia"), ("age", "29")}),
        ("Je m'appelle Margaux, je suis infirmière à Lyon.", {("name", "Margaux"), ("job", "infirmière"), ("location", "Lyon")}),
        ("Ich heiße Jonas und arbeite als Koch in Bremen.", {("name", "Jonas"), ("job", "Koch"), ("location", "Bremen")}),
        ("Tengo dos perros, Pipo y Lola.", {("pet", "perro Pipo"), ("pet", "perro Lola")}),
        ("Wir haben eine Katze namens Minka.", {("pet", "Katze Minka")}),
        ("Je suis allergique aux arachides, c'est pénible.", {("allergy", "arachides")}),
        ("Nous avons déménagé de Paris à Rennes.", {("location", "Rennes")}),
        # lists of named animals, and a named animal later in the sentence
        ("we've got three hens, Ada, Betty and Clara", {("pet", "hen Ada"), ("pet", "hen Betty"), ("pet", "hen Clara")}),
        ("there's also a very old tabby cat in my life called Biscuit", {("pet", "cat Biscuit")}),
        ("the café had a cat called Biscuit", set()),  # not theirs
        # status and work said in passing
        ("Forty-one, divorced, and living in Hull", {("age", "Forty-one"), ("other", "divorced"), ("location", "Hull")}),
        ("I'm actually a plumber, believe it or not", {("job", "plumber")}),
        ("so I finally started a new job at Ocado", {("employer", "Ocado")}),
        ("I run a small bakery with my husband", {("job", "small bakery"), ("family", "husband")}),
    ],
)
def test_rules_carry_over_to_new_shapes_and_languages(message: str, expected: set[tuple[str, str]]) -> None:
    facts, _ = extract(message)
    assert {(f.attribute, f.value) for f in facts} == expected


@pytest.mark.parametrize(
    "message",
    [
        "oh yeah, I just LOVE waiting in queues",  # sarcasm is not a like
        "oh great, I love it when the train is cancelled",
        "my cousin has a parrot called Kiwi",  # someone else's pet
        "my flatmate just got a job at Tesco",  # someone else's job
        "I'm not sure whether I want to move to Leeds",  # undecided is not a plan
    ],
)
def test_no_fact_from_sarcasm_other_people_or_indecision(message: str) -> None:
    facts, _ = extract(message)
    assert [(f.attribute, f.value) for f in facts if f.attribute != "family"] == []


@pytest.mark.parametrize(
    ("message", "attribute", "value"),
    [
        ("my oldest friend is allergic to shellfish so we never eat out", "allergy", "shellfish"),  # a friend's
        ("a colleague of mine is allergic to peanuts", "allergy", "peanuts"),
        ("my sister's cat is called Tom", "pet", "cat Tom"),  # the sister's cat
        ("I go climbing, usually somewhere in Snowdonia", "location", "Snowdonia"),  # where they go, not live
        ("Booked it! I'm flying to Lima for three weeks in March", "location", "Lima"),
        ("I moved down to Bristol in May", "employer", "Bristol"),  # a place, not said as work
        ("peanuts and I don't mix, proper allergy", "allergy", "allergy"),  # the kind is not its value
    ],
)
def test_a_model_candidate_about_someone_else_or_somewhere_else_is_rejected(message: str, attribute: str, value: str) -> None:
    facts, rejected = extract(message, [Candidate(attribute, value, "model")])
    assert (attribute, value) not in [(f.attribute, f.value) for f in facts]
    assert [c.value for c, _ in rejected if c.method == "model"] == [value]


def test_a_model_candidate_said_about_the_speaker_is_kept() -> None:
    for message, attribute, value in [
        ("honestly Deloitte has been my whole career", "employer", "Deloitte"),
        ("peanuts make my throat swell, allergic since I was a kid", "allergy", "peanuts"),
    ]:
        facts, _ = extract(message, [Candidate(attribute, value, "model")])
        assert [(f.attribute, f.value, f.method) for f in facts] == [(attribute, value, "model")]
