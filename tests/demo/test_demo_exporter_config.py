"""The exporter config the demo writes is one the exporter accepts, with every probe on."""

from pathlib import Path

from voicedrive_demo.exporter_config import render_exporter_config
from voicedrive_demo.ports import choose_ports
from voicedrive_exporter.config import parse_config


def _config_text(tmp_path: Path) -> str:
    return render_exporter_config(
        ports=choose_ports(None, []),
        database="voicedrive",
        db_user="voicedrive",
        password_file=tmp_path / "db-password",
        backup_glob=str(tmp_path / "backups" / "*.dump"),
        interval="5s",
    )


def test_demo_exporter_config_passes_the_exporters_validation(tmp_path: Path) -> None:
    config = parse_config(_config_text(tmp_path), source="demo exporter.yml")
    assert config.api is not None
    assert config.notifications is not None
    assert config.database is not None
    assert config.backup is not None
    assert config.host is not None


def test_demo_exporter_probes_the_database_through_the_simulator_proxy(tmp_path: Path) -> None:
    config = parse_config(_config_text(tmp_path))
    assert config.database is not None
    dsn = config.database.targets[0].pg.dsn.inline or ""
    assert "127.0.0.1:15432/" in dsn


def test_demo_exporter_keeps_the_password_in_a_file(tmp_path: Path) -> None:
    config = parse_config(_config_text(tmp_path))
    assert config.database is not None
    password = config.database.targets[0].pg.password
    assert password is not None
    assert password.file == str(tmp_path / "db-password")
    assert password.inline is None
