"""A config reload that fails for any reason keeps the old config and says so once."""

from pathlib import Path

import aiohttp
import pytest
from exporter_helpers import LogCapture, Serve

from voicedrive_exporter import exporter as exporter_module
from voicedrive_exporter.config import parse_config
from voicedrive_exporter.exporter import Exporter, create_app
from voicedrive_exporter.main import main

GOOD = "host: {enabled: false}\nbackup: {interval: 5s, path_glob: '/nonexistent/*.dump'}\n"
GAUGE = "voicedrive_exporter_config_last_reload_successful"


def write_good(path: Path) -> Path:
    path.write_text(GOOD, encoding="utf-8")
    return path


async def start(serve: Serve, path: Path) -> tuple[str, Exporter]:
    exporter = Exporter(parse_config(GOOD), config_path=path)
    return await serve(create_app(exporter)), exporter


async def gauge(base: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as resp:
        text = await resp.text()
    (line,) = [line for line in text.splitlines() if line.startswith(GAUGE)]
    return line.split()[-1]


async def test_reload_of_a_non_utf8_file_keeps_the_old_config(
    serve: Serve, tmp_path: Path, logs: LogCapture
) -> None:
    path = write_good(tmp_path / "exporter.yml")
    base, exporter = await start(serve, path)
    path.write_bytes(b"host: {enabled: \xff}\n")
    assert not await exporter.reload()
    assert exporter.config == parse_config(GOOD)
    assert await gauge(base) == "0.0"
    assert f"{path}: <root>: not UTF-8 text" in logs.text


async def test_reload_of_a_deeply_nested_file_keeps_the_old_config(
    serve: Serve, tmp_path: Path, logs: LogCapture
) -> None:
    path = write_good(tmp_path / "exporter.yml")
    base, exporter = await start(serve, path)
    path.write_text("host: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    assert not await exporter.reload()
    assert exporter.config == parse_config(GOOD)
    assert await gauge(base) == "0.0"
    assert "nested too deeply" in logs.text


async def test_reload_with_an_unexpected_loader_error_keeps_the_old_config(
    serve: Serve, tmp_path: Path, logs: LogCapture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: no known input makes the loader raise anything but ConfigError any more,
    # and a future bug must still not take the exporter down or leave the gauge at 1.
    def broken(path: object) -> object:
        raise RuntimeError("loader bug")

    path = write_good(tmp_path / "exporter.yml")
    base, exporter = await start(serve, path)
    monkeypatch.setattr(exporter_module, "load_config", broken)
    assert not await exporter.reload()
    assert exporter.config == parse_config(GOOD)
    assert await gauge(base) == "0.0"
    assert "config reload failed" in logs.text
    assert "RuntimeError: loader bug" in logs.text


def test_invalid_config_at_start_is_reported_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("backup: {path_glob: 3}\n", encoding="utf-8")
    assert main(["--config.file", str(path)]) == 1
    assert capsys.readouterr().err.count("backup.path_glob: expected a string, got int") == 1


def test_invalid_config_on_config_check_is_reported_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("backup: {path_glob: 3}\n", encoding="utf-8")
    assert main(["--config.file", str(path), "--config.check"]) == 1
    assert capsys.readouterr().err.count("backup.path_glob: expected a string, got int") == 1
