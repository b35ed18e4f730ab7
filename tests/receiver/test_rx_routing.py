"""Ownership (P7) and audiences (P6)."""

from pathlib import Path

from rx_helpers import alert, make_config, payload

from voicedrive_receiver.models import parse_notification
from voicedrive_receiver.routing import Route, audience_contacts, ownership, routes_for_level


def owner_of(tmp_path: Path, **labels: str):  # type: ignore[no-untyped-def]
    config = make_config(tmp_path)
    notification = parse_notification(payload(alert(**labels)))
    return config, ownership(notification.alerts, config)


def test_system_label_picks_the_owning_team(tmp_path: Path) -> None:
    _, owner = owner_of(tmp_path, system="medical", component="api")
    assert owner.teams == ("medical",)


def test_system_both_belongs_to_both_teams(tmp_path: Path) -> None:
    _, owner = owner_of(tmp_path, system="both")
    assert owner.teams == ("voicedrive", "medical")


def test_an_unclaimed_system_goes_to_every_team(tmp_path: Path) -> None:
    _, owner = owner_of(tmp_path, system="unknown")
    assert owner.teams == ("voicedrive", "medical")


def test_component_picks_the_role_within_the_owning_team(tmp_path: Path) -> None:
    config, owner = owner_of(tmp_path, system="voicedrive", component="database")
    assert owner.roles == ("infrastructure",)
    assert audience_contacts("owning_role", owner, config) == ("infra_engineer",)


def test_no_role_for_the_component_falls_back_to_the_owning_team(tmp_path: Path) -> None:
    config, owner = owner_of(tmp_path, system="medical", component="database")
    assert owner.roles == ()
    assert audience_contacts("owning_role", owner, config) == ("medical_ops",)


def test_routes_are_cumulative_per_level(tmp_path: Path) -> None:
    config, owner = owner_of(tmp_path)
    assert routes_for_level(1, owner, config) == (Route("slack", "emergency_channel"),)
    assert routes_for_level(2, owner, config) == (
        Route("email", "tech_lead"),
        Route("slack", "emergency_channel"),
    )
    level4 = routes_for_level(4, owner, config)
    assert Route("phone", "person_in_charge") in level4
    assert Route("email", "management") in level4
    assert Route("sms", "hotline") in level4
