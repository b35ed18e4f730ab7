"""Templates: golden output per channel, escaping, operator overrides and the fallback text."""

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from voicedrive_common.confload import Node
from voicedrive_common.errors import ConfigError
from voicedrive_receiver.channels.base import RenderedMessage
from voicedrive_receiver.rendering import (
    PARTS,
    Renderer,
    build_context,
    localtime,
    parse_template_settings,
    render,
)

GOLDEN = Path(__file__).parent / "golden"
KINDS = tuple(PARTS)


def sample_alert(i: int, status: str = "firing", **annotations: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": "VoiceDriveNotificationDeliveryLow",
            "level": "3",
            "severity": "critical",
            "system": "voicedrive",
            "component": "notifications",
            "instance": f"notify-{i}",
        },
        "annotations": {
            "summary": f"通知配信成功率が 95% 未満 <notify-{i}> & 再送中",
            "description": "直近 5 分の配信成功率は 71% です。",
            "runbook_url": "https://runbooks.example/notifications?step=1&lang=ja",
            **annotations,
        },
        "startsAt": "2025-09-01T09:15:30.123456789+09:00",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2025-09-01T01:02:03Z",
        "generatorURL": "http://127.0.0.1:19090/graph?g0.expr=x",
        "fingerprint": f"{i:016x}",
    }


def sample_context(status: str) -> dict[str, Any]:
    return build_context(
        status=status,
        level=3,
        alerts=[sample_alert(i, status) for i in range(1, 4)],
        group_labels={"alertname": "VoiceDriveNotificationDeliveryLow"},
        common_labels={
            "alertname": "VoiceDriveNotificationDeliveryLow",
            "system": "voicedrive",
            "component": "notifications",
        },
        common_annotations={"dashboard_url": "http://127.0.0.1:3000/d/voicedrive"},
        incident_id="INC-20250901-0003",
        incident_url="http://127.0.0.1:9918/api/incidents/INC-20250901-0003",
        external_url="http://127.0.0.1:19093",
        group_key='{}:{alertname="VoiceDriveNotificationDeliveryLow"}',
        receiver="voicedrive-receiver",
    )


def dump(message: RenderedMessage) -> str:
    extra = json.dumps(message.extra, ensure_ascii=False, indent=1, sort_keys=True)
    return (
        f"--- subject ---\n{message.subject}\n--- text ---\n{message.text}\n"
        f"--- html ---\n{message.html}\n--- extra ---\n{extra}\n"
    )


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(registry=CollectorRegistry())


@pytest.mark.parametrize("language", ["ja", "en"])
@pytest.mark.parametrize("status", ["firing", "resolved"])
@pytest.mark.parametrize("kind", KINDS)
def test_rendered_message_matches_golden_file(
    renderer: Renderer, kind: str, status: str, language: str
) -> None:
    # Regenerate after a deliberate template change: UPDATE_GOLDEN=1 pytest tests/receiver/channels
    got = dump(renderer.render(kind, status, language, sample_context(status)))
    path = GOLDEN / language / f"{kind}_{status}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got, encoding="utf-8")
    assert path.is_file(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    assert got == path.read_text(encoding="utf-8")


def test_builtin_templates_render_without_errors_for_every_channel(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    renderer = Renderer(registry=registry)
    for kind in KINDS:
        for status in ("firing", "resolved"):
            for language in ("ja", "en"):
                renderer.render(kind, status, language, sample_context(status))
    assert "template failed" not in caplog.text
    assert registry.get_sample_value("voicedrive_receiver_template_errors_total") is None


def test_japanese_is_the_default_language(renderer: Renderer) -> None:
    message = renderer.render("sms", "firing", "fr", sample_context("firing"))
    assert message.text.startswith("【VoiceDrive L3 重大】")


def test_resolved_email_announces_the_configured_watch(renderer: Renderer) -> None:
    ctx = {**sample_context("resolved"), "watch_seconds": 45.0}
    ja = renderer.render("email", "resolved", "ja", ctx)
    en = renderer.render("email", "resolved", "en", ctx)
    assert "解決後 45秒間は監視を続けます。" in ja.text
    assert "under watch for 45 s" in en.html


def test_level_names_in_japanese(renderer: Renderer) -> None:
    names = []
    for level in (1, 2, 3, 4):
        ctx = {**sample_context("firing"), "level": level}
        names.append(renderer.render("email", "firing", "ja", ctx).subject.split("]")[1])
    assert names == ["[レベル1 軽微", "[レベル2 中程度", "[レベル3 重大", "[レベル4 システム停止"]


def test_slack_text_escapes_mrkdwn_control_characters(renderer: Renderer) -> None:
    ctx = build_context(
        status="firing",
        level=2,
        alerts=[{"labels": {"alertname": "X"}, "annotations": {"summary": "<!channel> a & b"}}],
    )
    text = renderer.render("slack", "firing", "ja", ctx).text
    assert "&lt;!channel&gt; a &amp; b" in text
    assert "<!channel>" not in text


def test_slack_links_keep_their_brackets_but_escape_the_url(renderer: Renderer) -> None:
    text = renderer.render("slack", "firing", "ja", sample_context("firing")).text
    assert "<https://runbooks.example/notifications?step=1&amp;lang=ja|手順書>" in text


def test_email_html_is_autoescaped_and_plain_text_is_not(renderer: Renderer) -> None:
    ctx = build_context(
        status="firing",
        level=2,
        alerts=[{"labels": {"alertname": "X"}, "annotations": {"summary": "<script>x</script>"}}],
    )
    message = renderer.render("email", "firing", "ja", ctx)
    assert "&lt;script&gt;x&lt;/script&gt;" in message.html
    assert "<script>" not in message.html
    assert "<script>x</script>" in message.text


def test_large_group_lists_the_first_alerts_and_counts_the_rest(renderer: Renderer) -> None:
    ctx = build_context(status="firing", level=3, alerts=[sample_alert(i) for i in range(25)])
    assert "…他 15 件" in renderer.render("slack", "firing", "ja", ctx).text
    assert "... and 15 more" in renderer.render("slack", "firing", "en", ctx).text
    assert "他24件" in renderer.render("sms", "firing", "ja", ctx).text


def test_firing_message_lists_only_firing_alerts(renderer: Renderer) -> None:
    alerts = [sample_alert(1), sample_alert(2, "resolved")]
    ctx = build_context(status="firing", level=3, alerts=alerts)
    text = renderer.render("console", "firing", "ja", ctx).text
    assert "notify-1" in text
    assert "notify-2" not in text


def test_operator_override_is_searched_first(tmp_path: Path, renderer: Renderer) -> None:
    (tmp_path / "ja").mkdir()
    (tmp_path / "ja" / "sms_firing.j2").write_text("独自 L{{ level }} {{ incident_id }}")
    message = Renderer(directory=tmp_path, registry=None).render(
        "sms", "firing", "ja", sample_context("firing")
    )
    assert message.text == "独自 L3 INC-20250901-0003"


def test_an_edited_override_template_is_used_from_the_next_message_on(tmp_path: Path) -> None:
    (tmp_path / "ja").mkdir()
    template = tmp_path / "ja" / "sms_firing.j2"
    template.write_text("旧 L{{ level }}")
    renderer = Renderer(directory=tmp_path, registry=None)
    ctx = sample_context("firing")
    assert renderer.render("sms", "firing", "ja", ctx).text == "旧 L3"
    template.write_text("新 L{{ level }}")
    later = template.stat().st_mtime + 10  # a new mtime even on a coarse-grained file system
    os.utime(template, (later, later))
    assert renderer.render("sms", "firing", "ja", ctx).text == "新 L3"


def test_override_directory_falls_through_to_builtin_for_missing_files(tmp_path: Path) -> None:
    (tmp_path / "ja").mkdir()
    (tmp_path / "ja" / "sms_firing.j2").write_text("独自")
    own = Renderer(directory=tmp_path, registry=None)
    builtin = Renderer(registry=None)
    ctx = sample_context("firing")
    assert own.render("email", "firing", "ja", ctx) == builtin.render("email", "firing", "ja", ctx)


def test_broken_override_falls_back_and_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "ja").mkdir()
    (tmp_path / "ja" / "slack_firing.j2").write_text("{{ summary ")  # syntax error
    registry = CollectorRegistry()
    ctx = sample_context("firing")
    message = Renderer(directory=tmp_path, registry=registry).render("slack", "firing", "ja", ctx)
    assert message == Renderer(registry=None).render("slack", "firing", "ja", ctx)
    labels = {"channel": "slack"}
    assert registry.get_sample_value("voicedrive_receiver_template_errors_total", labels) == 1
    assert "template failed" in caplog.text
    assert "TemplateSyntaxError" in caplog.text


def test_override_raising_while_rendering_falls_back(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "phone_firing.j2").write_text("{{ no_such_key.attribute }}")
    registry = CollectorRegistry()
    message = Renderer(directory=tmp_path, registry=registry).render(
        "phone", "firing", "en", sample_context("firing")
    )
    assert message.text.startswith("This is an emergency call from VoiceDrive monitoring.")
    labels = {"channel": "phone"}
    assert registry.get_sample_value("voicedrive_receiver_template_errors_total", labels) == 1


def test_context_that_breaks_every_template_still_yields_plain_text() -> None:
    # Alerts without labels/annotations: the built-in templates fail on them too.
    ctx = {
        "level": 4,
        "summary": "全停止",
        "incident_id": "INC-9",
        "firing_alerts": [{"oops": 1}],
        "alerts": [{"oops": 1}],
        "alert_count": 1,
    }
    registry = CollectorRegistry()
    message = Renderer(registry=registry).render("email", "firing", "ja", ctx)
    assert message.text == "[VoiceDrive] レベル4(システム停止) 発生: 全停止\nアラート数: 1\n" + (
        "インシデント: INC-9"
    )
    assert message.html.startswith("<html><body><pre>[VoiceDrive] レベル4")
    # The subject template does not touch the alerts: it still renders.
    assert message.subject == "[VoiceDrive][レベル4 システム停止] 全停止"
    labels = {"channel": "email"}
    assert registry.get_sample_value("voicedrive_receiver_template_errors_total", labels) == 2


def test_unreadable_context_still_yields_a_message() -> None:
    message = Renderer(registry=None).render("sms", "firing", "ja", {"level": "four"})
    assert message.text == "[VoiceDrive] アラート通知 / alert notification"


def test_module_render_uses_builtin_templates() -> None:
    message = render("sms", "resolved", "en", sample_context("resolved"))
    assert message.text.startswith("VoiceDrive RESOLVED L3:")


def test_renderer_reports_errors_to_a_callback(tmp_path: Path) -> None:
    (tmp_path / "ja").mkdir()
    (tmp_path / "ja" / "sms_firing.j2").write_text("{% if %}")
    seen: list[tuple[str, str]] = []
    Renderer(
        directory=tmp_path, registry=None, on_error=lambda k, t, e: seen.append((k, t))
    ).render("sms", "firing", "ja", sample_context("firing"))
    assert seen == [("sms", "override:ja/sms_firing.j2")]


def test_localtime_shows_asia_tokyo_and_accepts_nanoseconds_and_offsets() -> None:
    assert localtime("2025-09-01T00:00:00.123456789Z") == "2025-09-01 09:00:00 JST"
    assert localtime("2025-09-01T09:00:00+09:00") == "2025-09-01 09:00:00 JST"


def test_localtime_of_the_zero_end_time_is_empty() -> None:
    assert localtime("0001-01-01T00:00:00Z") == ""


def test_template_settings_reject_a_missing_directory(tmp_path: Path) -> None:
    node = Node({"directory": str(tmp_path / "nope")}, "templates")
    with pytest.raises(ConfigError, match=r"templates.directory: is not a directory"):
        parse_template_settings(node)


def test_template_settings_language_defaults_to_japanese() -> None:
    assert parse_template_settings(Node({}, "templates")).language == "ja"


def test_template_errors_are_logged_without_the_context(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (tmp_path / "ja").mkdir()
    (tmp_path / "ja" / "sms_firing.j2").write_text("{{ summary | no_such_filter }}")
    Renderer(directory=tmp_path, registry=None).render(
        "sms", "firing", "ja", sample_context("firing")
    )
    assert "通知配信成功率" not in caplog.text


FIRING_DEADLINE_TEXTS = {
    "ja": {
        "slack": "対応期限: 1時間30分以内",
        "email": "対応期限: 検知から1時間30分以内",
        "sms": "1時間30分以内に対応",
        "phone": "1時間30分以内の対応が必要です",
        "webhook": "1時間30分以内に対応",
        "console": "対応期限=1時間30分以内",
    },
    "en": {
        "slack": "respond within 1 h 30 min",
        "email": "Respond: within 1 h 30 min of detection",
        "sms": "respond within 1 h 30 min",
        "phone": "Please respond within 1 h 30 min.",
        "webhook": "respond within 1 h 30 min",
        "console": "respond=within 1 h 30 min",
    },
}


@pytest.mark.parametrize("language", ["ja", "en"])
@pytest.mark.parametrize("kind", KINDS)
def test_firing_message_states_the_configured_response_deadline(
    renderer: Renderer, kind: str, language: str
) -> None:
    ctx = {**sample_context("firing"), "respond_seconds": 5400.0}
    message = renderer.render(kind, "firing", language, ctx)
    assert FIRING_DEADLINE_TEXTS[language][kind] in message.text
    # Not also the P2 default of level 3 (1 h).
    assert not re.search(r"1時間以内|within 1 h(?! 30)", message.text)


def test_email_html_states_the_configured_response_deadline(renderer: Renderer) -> None:
    ctx = {**sample_context("firing"), "respond_seconds": 1200.0}
    assert "<td>検知から20分以内</td>" in renderer.render("email", "firing", "ja", ctx).html
    assert (
        "<td>within 20 min of detection</td>" in renderer.render("email", "firing", "en", ctx).html
    )


@pytest.mark.parametrize(
    ("level", "ja", "en"),
    [
        (1, "4時間以内", "within 4 h"),
        (2, "2時間以内", "within 2 h"),
        (4, "30分以内", "within 30 min"),
    ],
)
def test_response_deadline_defaults_to_the_p2_value_of_the_level(
    renderer: Renderer, level: int, ja: str, en: str
) -> None:
    ctx = build_context(status="firing", level=level, alerts=[sample_alert(1)])
    assert ja in renderer.render("sms", "firing", "ja", ctx).text
    assert en in renderer.render("sms", "firing", "en", ctx).text
