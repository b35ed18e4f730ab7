"""Every alert's runbook_url points at an existing page and heading under docs/runbooks/."""

import re
from pathlib import Path

import pytest

from voicedrive_mixin.thresholds import ALERT_NAMES, load_thresholds

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = REPO / "docs" / "runbooks"
THRESHOLDS = load_thresholds()
SECTIONS = ("Meaning", "Impact", "First checks", "Level and responders", "Escalation", "Why")


def anchors(page: Path) -> dict[str, str]:
    """GitHub-style anchors of the page's second-level headings -> the section text."""
    text = page.read_text(encoding="utf-8")
    out = {}
    for block in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        heading, _, body = block.partition("\n")
        out[re.sub(r"[^a-z0-9_-]", "", heading.strip().lower().replace(" ", "-"))] = body
    return out


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_runbook_anchor_exists_with_every_section(name: str) -> None:
    alert = THRESHOLDS.alert(name)
    file, anchor = alert.runbook.split("#")
    body = anchors(RUNBOOKS / file).get(anchor)
    assert body is not None, f"{file} has no heading for #{anchor}"
    for section in SECTIONS:
        assert f"**{section}**" in body, f"{name}: no '{section}' in {file}#{anchor}"


def _section(name: str) -> str:
    alert = THRESHOLDS.alert(name)
    file, anchor = alert.runbook.split("#")
    return anchors(RUNBOOKS / file)[anchor]


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_runbook_states_the_alert_level(name: str) -> None:
    level = THRESHOLDS.alert(name).level
    responders = _section(name).split("**Level and responders** — ")[1]
    assert responders.startswith(f"Level {level}:" if level else "No level")


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_runbook_quotes_the_default_for(name: str) -> None:
    quoted = re.findall(r"`for: ([0-9a-z]+)`", _section(name))
    assert all(q == THRESHOLDS.alert(name).for_text for q in quoted), quoted
