"""shoal.toml: defaults, validation, and errors that point at the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.config import DEFAULT_CONFIG_TOML, Settings, load_config, parse_config, write_default_config
from shoal.errors import ConfigError


def test_the_default_config_declares_the_four_core_bots_on_the_embedded_server() -> None:
    cfg = parse_config(DEFAULT_CONFIG_TOML)
    assert {b.role for b in cfg.bots} == {"conversation", "primary", "thinker", "memory"}
    assert cfg.servers[0].kind == "embedded"
    assert cfg.routing.always == ["memory"]
    assert all(b.server == "local" for b in cfg.bots)


def test_a_missing_file_means_the_defaults(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "nope.toml")
    assert len(cfg.bots) == 4


def test_settings_read_shoal_home_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHOAL_HOME", str(tmp_path))
    s = Settings()
    assert s.home == tmp_path and s.config_path == tmp_path / "shoal.toml" and s.db_path == tmp_path / "shoal.db"


def test_config_init_writes_a_file_that_parses_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = write_default_config(tmp_path / "shoal.toml")
    assert load_config(path).bots
    with pytest.raises(ConfigError, match="already exists"):
        write_default_config(path)
    write_default_config(path, force=True)


def test_invalid_toml_names_the_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "shoal.toml"
    p.write_text('[engine]\nthreads = 2\n\n[[bots]]\nname = "x\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.path == str(p) and e.value.line == 5
    assert f"{p}:5" in str(e.value)


def test_a_bad_value_names_the_file_line_and_field(tmp_path: Path) -> None:
    text = DEFAULT_CONFIG_TOML.replace('history = 6', 'history = "lots"')
    p = tmp_path / "shoal.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if 'history = "lots"' in l)
    assert e.value.field == "bots.2.history"
    assert e.value.line == line
    assert "bots.2.history" in str(e.value) and f":{line}:" in str(e.value)


def test_an_unknown_field_is_reported_as_probably_misspelled() -> None:
    text = DEFAULT_CONFIG_TOML.replace("max_sequences = 8", "max_sequence = 8")
    with pytest.raises(ConfigError) as e:
        parse_config(text, "shoal.toml")
    assert e.value.field == "engine.max_sequence" and "misspelled" in str(e.value)
    assert e.value.line == next(i for i, l in enumerate(text.splitlines(), 1) if l.startswith("max_sequence ="))


def test_a_field_in_a_nested_array_table_is_located() -> None:
    text = DEFAULT_CONFIG_TOML.replace('when = "plan"', 'when = "sometimes"')
    with pytest.raises(ConfigError) as e:
        parse_config(text, "shoal.toml")
    assert e.value.field == "routing.rules.1.when"
    assert e.value.line == next(i for i, l in enumerate(text.splitlines(), 1) if 'when = "sometimes"' in l)


@pytest.mark.parametrize(
    "change, message",
    [
        (('server = "local"\ninstruction = "You decide', 'server = "nowhere"\ninstruction = "You decide'), "server 'nowhere'"),
        (('send = ["thinker"]', 'send = ["ghost"]'), "unknown bot 'ghost'"),
        (('role = "primary"', 'role = "conversation"'), "exactly one enabled bot must have role"),
        (('kind = "embedded"', 'kind = "ollama"'), "needs a url"),
    ],
)
def test_cross_references_are_checked(change: tuple[str, str], message: str) -> None:
    text = DEFAULT_CONFIG_TOML.replace(*change, 1)
    assert text != DEFAULT_CONFIG_TOML
    with pytest.raises(ConfigError, match=message):
        parse_config(text, "shoal.toml")


def test_a_regex_rule_must_compile() -> None:
    text = DEFAULT_CONFIG_TOML + '\n[[routing.rules]]\nname = "r"\nwhen = "regex"\npattern = "("\nsend = ["thinker"]\n'
    with pytest.raises(ConfigError, match="regular expression"):
        parse_config(text, "shoal.toml")


def test_rooms_and_routing_are_checked_against_the_roles_of_bots() -> None:
    from shoal.config import DEFAULT_CONFIG_TOML, parse_config
    from shoal.errors import ConfigError

    persona = '\n[[bots]]\nname = "sage"\nrole = "persona"\nrate = { per_minute = 2 }\n'
    cfg = parse_config(DEFAULT_CONFIG_TOML + persona + '\n[[rooms]]\nname = "den"\npersonas = ["sage"]\n')
    assert cfg.room("den").personas == ["sage"] and cfg.bot("sage").rate.windows() == [("per_minute", 60.0, 2)]
    try:
        parse_config(DEFAULT_CONFIG_TOML + '\n[[rooms]]\nname = "den"\npersonas = ["thinker"]\n')
    except ConfigError as exc:
        assert "'thinker', which is not a bot of role 'persona'" in str(exc)
    else:
        raise AssertionError("a room of non-personas was accepted")
    try:
        parse_config(DEFAULT_CONFIG_TOML.replace('send = ["thinker"]', 'send = ["conversation"]', 1))
    except ConfigError as exc:
        assert "cannot send to bot 'conversation'" in str(exc)
    else:
        raise AssertionError("routing to the conversation bot was accepted")
    try:
        parse_config(DEFAULT_CONFIG_TOML.replace('interrupt = "terminate"', 'interrupt = "panic"'))
    except ConfigError as exc:
        assert exc.field == "bots.2.interrupt" or "interrupt" in str(exc)
    else:
        raise AssertionError("an unknown interrupt policy was accepted")


@pytest.mark.parametrize(
    "change, field",
    [
        (('server = "local"\ninstruction = "You decide', 'server = "nowhere"\ninstruction = "You decide'), "bots.1.server"),
        (('send = ["thinker"]', 'send = ["ghost"]'), "routing.rules.0.send"),
        (('always = ["memory"]', 'always = ["ghost"]'), "routing.always"),
    ],
)
def test_a_cross_reference_error_names_the_line_and_the_field(change: tuple[str, str], field: str) -> None:
    text = DEFAULT_CONFIG_TOML.replace(*change, 1)
    with pytest.raises(ConfigError) as e:
        parse_config(text, "shoal.toml")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if change[1].splitlines()[0] in row)
    assert e.value.field == field and e.value.line == line, str(e.value)
    assert f"shoal.toml:{line}: field '{field}'" in str(e.value) and "Value error" not in str(e.value)


def test_a_room_naming_a_bot_that_is_no_persona_is_located() -> None:
    text = DEFAULT_CONFIG_TOML + '\n[[rooms]]\nname = "den"\npersonas = ["thinker"]\n'
    with pytest.raises(ConfigError) as e:
        parse_config(text, "shoal.toml")
    assert e.value.field == "rooms.0.personas" and e.value.line == len(text.splitlines())
