"""Non-finite values in an overrides file are config errors naming file and key path."""

from pathlib import Path

import pytest

from voicedrive_common.errors import ConfigError
from voicedrive_mixin import generate
from voicedrive_mixin.thresholds import load_thresholds


def overrides(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "deploy.yml"
    path.write_text(body, encoding="utf-8")
    return path


def test_nan_for_is_rejected_with_the_key_path(tmp_path: Path) -> None:
    path = overrides(tmp_path, "alerts:\n  VoiceDriveAPIDown:\n    for: .nan\n")
    with pytest.raises(ConfigError) as info:
        load_thresholds(overrides=path)
    assert (
        str(info.value) == f"{path}: alerts.VoiceDriveAPIDown.for: duration must be finite, got nan"
    )


def test_infinite_keep_firing_for_is_rejected_with_the_key_path(tmp_path: Path) -> None:
    path = overrides(tmp_path, "alerts:\n  VoiceDriveSystemDown:\n    keep_firing_for: .inf\n")
    with pytest.raises(ConfigError) as info:
        load_thresholds(overrides=path)
    assert str(info.value) == (
        f"{path}: alerts.VoiceDriveSystemDown.keep_firing_for: duration must be finite, got inf"
    )


def test_nan_ratio_param_is_rejected_with_the_key_path(tmp_path: Path) -> None:
    path = overrides(tmp_path, "alerts:\n  VoiceDriveHostCPUHigh:\n    params: {threshold: .nan}\n")
    with pytest.raises(ConfigError) as info:
        load_thresholds(overrides=path)
    assert str(info.value).startswith(
        f"{path}: alerts.VoiceDriveHostCPUHigh.params.threshold: must be a finite number"
    )


def test_cli_with_nan_for_exits_1_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = overrides(tmp_path, "alerts:\n  VoiceDriveAPIDown:\n    for: .nan\n")
    code = generate.main(["--overrides", str(path), "--output-dir", str(tmp_path / "o")])
    assert code == 1
    assert (
        f"{path}: alerts.VoiceDriveAPIDown.for: duration must be finite" in capsys.readouterr().err
    )
