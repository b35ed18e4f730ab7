"""The registry names every channel kind once, each parsing its own config."""

from voicedrive_receiver.channels import CHANNEL_TYPES


def test_registry_holds_the_six_kinds() -> None:
    assert sorted(CHANNEL_TYPES) == ["console", "email", "phone", "slack", "sms", "webhook"]


def test_each_entry_is_registered_under_its_own_kind() -> None:
    assert all(entry.kind == kind for kind, entry in CHANNEL_TYPES.items())
