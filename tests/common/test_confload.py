"""confload.Node: typed reads whose errors name the file and the key path."""

from pathlib import Path

import pytest

from voicedrive_common.confload import load_yaml, parse_yaml
from voicedrive_common.errors import ConfigError


def test_nan_duration_is_rejected_with_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "exporter.yml"
    path.write_text("host:\n  interval: .nan\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_yaml(path).node("host").duration("interval", 15.0, lo=0.01)
    assert str(caught.value).startswith(f"{path}: host.interval: duration must be finite")


def test_inf_duration_is_rejected() -> None:
    node = parse_yaml("interval: .inf\n")
    with pytest.raises(ConfigError, match=r"^interval: duration must be finite"):
        node.duration("interval", lo=0.01)


def test_invalid_duration_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("api:\n  interval: soon\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_yaml(path).node("api").duration("interval")
    assert caught.value.source == str(path)
    assert str(caught.value).startswith(f"{path}: api.interval: invalid duration 'soon'")


def test_parse_error_names_the_file(tmp_path: Path) -> None:
    def reject(value: object, path: str) -> int:
        raise ConfigError(path, "no")

    path = tmp_path / "c.yml"
    path.write_text("k: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_yaml(path).parse("k", reject)
    assert str(caught.value) == f"{path}: k: no"


@pytest.mark.parametrize("text", [".nan", ".inf", "-.inf"])
def test_number_rejects_non_finite(text: str) -> None:
    node = parse_yaml(f"jitter: {text}\n")
    with pytest.raises(ConfigError, match=r"^jitter: must be a finite number"):
        node.number("jitter", lo=0, hi=1)


def test_number_rejects_integer_too_large_for_a_float() -> None:
    node = parse_yaml(f"n: {10**400}\n")
    with pytest.raises(ConfigError, match=r"^n: must be a finite number"):
        node.number("n")


def test_non_utf8_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_yaml(path)
    assert str(caught.value).startswith(f"{path}: <root>: not UTF-8 text")


def test_deeply_nested_yaml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "deep.yml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_yaml(path)
    assert str(caught.value) == f"{path}: <root>: invalid YAML: nested too deeply"


def test_duplicate_key_is_rejected_with_key_path_and_line(tmp_path: Path) -> None:
    path = tmp_path / "dup.yml"
    path.write_text("api:\n  interval: 5s\n  interval: 10s\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_yaml(path)
    assert str(caught.value) == (
        f"{path}: api.interval: duplicate key at line 3 (first given at line 2)"
    )


def test_duplicate_key_inside_a_list_item_names_the_index() -> None:
    with pytest.raises(ConfigError, match=r"^endpoints\[1\]\.url: duplicate key at line 4"):
        parse_yaml("endpoints:\n  - url: a\n  - url: b\n    url: c\n")


def test_same_key_in_sibling_mappings_is_allowed() -> None:
    root = parse_yaml("a: {k: 1}\nb: {k: 2}\n")
    assert root.node("a").integer("k") == 1
    assert root.node("b").integer("k") == 2


def test_impossible_date_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^<root>: invalid YAML value: month must be in 1\.\.12"):
        parse_yaml("day: 2026-13-45\n")
