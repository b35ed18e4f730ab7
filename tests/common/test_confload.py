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
