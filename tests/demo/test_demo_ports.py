"""Which ports the demo uses: the contract's defaults, a shifted block, free ports, overrides."""

import pytest

from voicedrive_common.errors import ConfigError
from voicedrive_demo.ports import DEFAULT_PORTS, choose_ports


def test_default_ports_are_the_contract_ports() -> None:
    ports = choose_ports(None, [])
    assert (ports["sim-api"], ports["sim-admin"], ports["db-proxy"], ports["postgres"]) == (
        18080,
        18081,
        15432,
        15433,
    )
    assert ports["exporter"] == 9917


def test_base_port_shifts_every_port_into_one_block() -> None:
    ports = choose_ports(30000, [])
    assert sorted(ports.by_name.values()) == list(range(30000, 30000 + len(DEFAULT_PORTS)))


def test_base_port_zero_picks_distinct_ports_away_from_the_defaults() -> None:
    ports = choose_ports(0, [])
    assert len(set(ports.by_name.values())) == len(DEFAULT_PORTS)
    assert ports["sim-api"] != DEFAULT_PORTS["sim-api"]


def test_port_override_changes_one_service() -> None:
    ports = choose_ports(None, ["exporter=29917"])
    assert ports["exporter"] == 29917
    assert ports["sim-api"] == 18080


@pytest.mark.parametrize(
    ("overrides", "named"),
    [(["nosuch=1"], "NAME=PORT"), (["exporter=http"], "exporter"), (["exporter=18080"], "same")],
)
def test_bad_port_override_is_rejected(overrides: list[str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        choose_ports(None, overrides)


def test_base_port_out_of_range_is_rejected() -> None:
    with pytest.raises(ConfigError, match="base-port"):
        choose_ports(80, [])
