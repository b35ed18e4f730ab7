"""The webhook edge: auth, size, parsing, 2xx only after storing, dedupe."""

import base64
import json
from dataclasses import replace
from pathlib import Path

from rx_helpers import TOKEN, Harness, alert, harness, make_config, payload

from voicedrive_common.clock import FakeClock
from voicedrive_common.secrets import SecretRef
from voicedrive_receiver.config import BasicAuth
from voicedrive_receiver.store import open_sqlite_store


async def test_accepted_payload_is_answered_200_with_its_journal_receipt(rx: Harness) -> None:
    resp = await rx.post(payload())
    body = json.loads(await resp.text())
    assert resp.status == 200
    assert body["status"] == "accepted"
    assert [p.entry_id for p in rx.processed] == [body["receipt"]]


async def test_an_accepted_payload_opens_its_incident_once_processed(rx: Harness) -> None:
    processed = await rx.ingest(payload())
    assert processed.outcome == "stored"
    assert processed.incident_id is not None
    assert processed.incident_id.startswith("INC-20250901-")


async def test_identical_payload_posted_twice_pages_once_per_channel(rx: Harness) -> None:
    body = payload(alert(level="2"))
    first = await rx.post(body)
    second = await rx.post(body)
    await rx.drain()
    assert (first.status, second.status) == (200, 200)
    assert [p.outcome for p in rx.processed] == ["duplicate"]
    assert rx.channels["slack"].contacts() == [("emergency_channel", "firing")]
    assert rx.channels["email"].contacts() == [("tech_lead", "firing")]


async def test_same_notification_from_a_second_alertmanager_pages_once(rx: Harness) -> None:
    await rx.post(payload(alert(level="2"), external_url="http://alertmanager-a:9093"))
    await rx.post(payload(alert(level="2"), external_url="http://alertmanager-b:9093"))
    await rx.drain()
    assert len(rx.channels["slack"].sent) == 1
    assert len(rx.channels["email"].sent) == 1
    assert rx.services.metrics.duplicates._value.get() == 1


async def test_a_new_alert_joining_the_group_pages_again(rx: Harness) -> None:
    await rx.post(payload(alert(fingerprint="a")))
    await rx.post(payload(alert(fingerprint="a"), alert(fingerprint="b")))
    await rx.drain()
    assert len(rx.channels["slack"].sent) == 2


async def test_malformed_json_gets_400_naming_the_position(rx: Harness) -> None:
    resp = await rx.post(None, raw=b'{"version": "4", "alerts": [')
    body = json.loads(await resp.text())
    assert resp.status == 400
    assert "invalid JSON at line 1" in body["error"]


async def test_wrong_version_gets_400_naming_version(rx: Harness) -> None:
    resp = await rx.post({**payload(), "version": "3"})
    body = json.loads(await resp.text())
    assert resp.status == 400
    assert body["field"] == "version"
    assert "expected '4'" in body["error"]


async def test_missing_group_key_gets_400_naming_it(rx: Harness) -> None:
    body = payload()
    del body["groupKey"]
    resp = await rx.post(body)
    assert resp.status == 400
    assert json.loads(await resp.text())["field"] == "groupKey"


async def test_missing_alert_field_gets_400_with_its_path(rx: Harness) -> None:
    broken = alert()
    del broken["fingerprint"]
    resp = await rx.post(payload(alert(fingerprint="ok"), broken))
    assert resp.status == 400
    assert json.loads(await resp.text())["field"] == "alerts[1].fingerprint"


async def test_bad_timestamp_gets_400_not_500(rx: Harness) -> None:
    resp = await rx.post(payload(alert(starts_at="yesterday")))
    assert resp.status == 400
    assert json.loads(await resp.text())["field"] == "alerts[0].startsAt"


async def test_deeply_nested_json_gets_400_saying_so(rx: Harness) -> None:
    nested = "[" * 5000 + "]" * 5000
    raw = f'{{"version":"4","groupKey":"g","labels":{{"a":{nested}}}}}'.encode()
    resp = await rx.post(None, raw=raw)
    assert resp.status == 400
    assert "nested too deeply" in json.loads(await resp.text())["error"]


async def test_lone_surrogate_escape_gets_400_not_500(rx: Harness) -> None:
    body = json.dumps(payload(alert(note="LONE"))).encode().replace(b"LONE", rb"\ud800")
    resp = await rx.post(None, raw=body)
    assert resp.status == 400
    assert "surrogate" in json.loads(await resp.text())["error"]


async def test_a_processing_bug_keeps_the_notification_in_the_journal_as_failed(
    rx: Harness,
) -> None:
    def broken_render(*args: object) -> None:
        raise TypeError("template blew up")

    working = rx.services.render
    rx.services.render = broken_render
    resp = await rx.post(payload())
    assert resp.status == 200  # already durable: a 4xx or 5xx now would be a lie
    assert [p.outcome for p in rx.processed] == ["failed"]
    stats = await rx.store.journal.stats()
    assert (stats.pending, stats.failed) == (0, 1)
    rx.services.render = working
    later = await rx.ingest(payload(group_key="{}:{other}"))
    assert later.outcome == "stored"  # the failed row blocks nothing


async def test_resolved_group_still_holding_a_firing_alert_pages_for_it(rx: Harness) -> None:
    firing = alert(fingerprint="fp1", level="2")
    ended = alert(fingerprint="fp2", status="resolved", ends_at="2025-09-01T09:05:00+09:00")
    resp = await rx.post(payload(firing, ended, status="resolved"))
    await rx.drain()
    assert resp.status == 200
    assert rx.channels["slack"].contacts() == [("emergency_channel", "firing")]


async def test_starts_at_more_than_a_day_ahead_of_the_clock_gets_400_naming_it(
    rx: Harness,
) -> None:
    resp = await rx.post(payload(alert(starts_at="9999-12-31T23:59:59Z")))
    answer = json.loads(await resp.text())
    assert resp.status == 400
    assert answer["field"] == "alerts[0].startsAt"
    assert "more than a day in the future" in answer["error"]


async def test_starts_at_before_2000_gets_400_naming_it(rx: Harness) -> None:
    resp = await rx.post(payload(alert(starts_at="1970-01-01T00:00:00Z")))
    assert resp.status == 400
    assert json.loads(await resp.text())["field"] == "alerts[0].startsAt"


async def test_ends_at_far_in_the_future_gets_400_naming_it(rx: Harness) -> None:
    resp = await rx.post(payload(alert(ends_at="2999-01-01T00:00:00Z")))
    assert resp.status == 400
    assert json.loads(await resp.text())["field"] == "alerts[0].endsAt"


async def test_non_object_body_gets_400(rx: Harness) -> None:
    resp = await rx.post([1, 2, 3])
    assert resp.status == 400


async def test_unknown_extra_fields_are_accepted(rx: Harness) -> None:
    body = payload()
    body["somethingNew"] = {"x": 1}
    body["alerts"][0]["futureField"] = True
    resp = await rx.post(body)
    assert resp.status == 200


async def test_body_over_the_limit_gets_413(rx: Harness) -> None:
    limit = rx.services.config.server.max_body_bytes
    big = payload()
    big["alerts"][0]["annotations"]["description"] = "x" * (limit + 1)
    resp = await rx.post(big)
    assert resp.status == 413


async def test_missing_token_gets_401(rx: Harness) -> None:
    resp = await rx.post(payload(), token="")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_wrong_token_gets_401_and_stores_nothing(rx: Harness) -> None:
    resp = await rx.post(payload(), token=TOKEN + "x")
    assert resp.status == 401
    assert await rx.store.list_incidents() == []


async def test_basic_auth_accepts_right_and_refuses_wrong_password(
    tmp_path: Path, clock: FakeClock
) -> None:
    config = make_config(tmp_path)
    server = replace(
        config.server,
        auth=BasicAuth(username="am", password=SecretRef(path="p", inline="s3cret-pw")),
    )
    config = replace(config, server=server)
    store = await open_sqlite_store(str(tmp_path / "b.db"))
    async with harness(config, store, clock) as h:
        good = base64.b64encode(b"am:s3cret-pw").decode()
        bad = base64.b64encode(b"am:wrong").decode()
        ok = await h.client.post(
            "/webhook", json=payload(), headers={"Authorization": f"Basic {good}"}
        )
        refused = await h.client.post(
            "/webhook", json=payload(), headers={"Authorization": f"Basic {bad}"}
        )
        assert (ok.status, refused.status) == (200, 401)


async def test_webhook_outcomes_are_counted(rx: Harness) -> None:
    await rx.post(payload())
    await rx.post(payload())
    await rx.post({"version": "4"})
    webhooks = rx.services.metrics.webhooks
    assert webhooks.labels(outcome="accepted")._value.get() == 2
    assert rx.services.metrics.processed.labels(outcome="duplicate")._value.get() == 1
    assert webhooks.labels(outcome="invalid")._value.get() == 1
