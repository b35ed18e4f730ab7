"""alertmanager.yml is valid for amtool and routes every alert class where it must go."""

import subprocess
from pathlib import Path

import pytest
import yaml
from am_harness import ALERT_CLASSES, CONFIG, repo_config

from binaries import require_binary
from voicedrive_common.durations import parse_duration
from voicedrive_mixin.thresholds import INHIBITS, INHIBITS_EXCLUSIVE, load_thresholds

RECEIVER = "voicedrive-receiver"
WATCHDOG = "voicedrive-watchdog"
FALLBACK = "voicedrive-fallback"
# The alerts that also take the path around the receiver: the paging path itself broken.
RECEIVER_DOWN = "VoiceDriveReceiverDown"
WEBHOOKS_FAILING = "VoiceDriveReceiverWebhooksFailing"
AROUND_THE_RECEIVER = (RECEIVER_DOWN, WEBHOOKS_FAILING)
PROMETHEUS_CONFIG = CONFIG.parents[1] / "prometheus" / "prometheus.yml"


def routed_receivers(*labels: str) -> list[str]:
    """Receivers amtool resolves for an alert with these ``name=value`` labels."""
    amtool = require_binary("amtool")
    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={CONFIG}", *labels],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [name.strip() for name in result.stdout.strip().split(",") if name.strip()]


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    """``amtool check-config PATH``."""
    amtool = require_binary("amtool")
    return subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30
    )


def test_amtool_check_config_accepts_the_file() -> None:
    result = check_config(CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_amtool_check_config_passes_without_any_secret_file(tmp_path: Path) -> None:
    # A fresh clone has no secrets/ beside the config and no fallback Slack URL file: the
    # secret files are read at send time, never at load. The copy sits in an empty folder
    # (relative token path) and names a Slack URL file that certainly does not exist.
    config = repo_config()
    for receiver in config["receivers"]:
        for slack in receiver.get("slack_configs", []):
            slack["api_url_file"] = str(tmp_path / "missing" / Path(slack["api_url_file"]).name)
    copy = tmp_path / "alertmanager.yml"
    copy.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    assert not (tmp_path / "secrets").exists()
    result = check_config(copy)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "alertname", sorted(set(ALERT_CLASSES) - {"Watchdog", *AROUND_THE_RECEIVER})
)
@pytest.mark.parametrize("system", ["voicedrive", "medical", "both"])
def test_every_alert_class_routes_to_the_receiver_only(alertname: str, system: str) -> None:
    labels = {"alertname": alertname, "system": system, **ALERT_CLASSES[alertname]}
    assert routed_receivers(*(f"{k}={v}" for k, v in labels.items())) == [RECEIVER]


@pytest.mark.parametrize("system", ["voicedrive", "medical", "both"])
def test_receiver_down_routes_to_the_fallback_and_to_the_receiver(system: str) -> None:
    labels = {"alertname": RECEIVER_DOWN, "system": system, **ALERT_CLASSES[RECEIVER_DOWN]}
    labels |= {"job": "voicedrive-receiver", "instance": "127.0.0.1:9918"}
    assert routed_receivers(*(f"{k}={v}" for k, v in labels.items())) == [FALLBACK, RECEIVER]


@pytest.mark.parametrize("system", ["voicedrive", "medical", "both"])
def test_webhooks_failing_routes_to_the_fallback_and_to_the_receiver(system: str) -> None:
    # No job or instance label: the rule sums Alertmanager's counters.
    labels = {"alertname": WEBHOOKS_FAILING, "system": system, **ALERT_CLASSES[WEBHOOKS_FAILING]}
    assert routed_receivers(*(f"{k}={v}" for k, v in labels.items())) == [FALLBACK, RECEIVER]


def test_an_alert_whose_name_only_starts_like_a_fallback_alert_stays_off_the_fallback() -> None:
    # Alertmanager anchors `=~` regexes: the matcher names exactly the two alerts.
    labels = {"alertname": RECEIVER_DOWN + "Soon", **ALERT_CLASSES[RECEIVER_DOWN]}
    assert routed_receivers(*(f"{k}={v}" for k, v in labels.items())) == [RECEIVER]


def test_the_fallback_does_not_go_through_the_receiver() -> None:
    # A fallback that needed the receiver would be down exactly when it is needed.
    (fallback,) = [r for r in repo_config()["receivers"] if r["name"] == FALLBACK]
    assert set(fallback) == {"name", "email_configs", "slack_configs"}
    (mail,) = fallback["email_configs"]
    (slack,) = fallback["slack_configs"]
    assert mail["send_resolved"] is True
    assert slack["send_resolved"] is True


def test_the_fallback_reads_its_slack_url_from_an_absolute_file_path() -> None:
    # Alertmanager 0.25 resolves api_url_file against its working directory (`/` under the
    # Debian unit), not the config's: a relative path would name another file.
    (fallback,) = [r for r in repo_config()["receivers"] if r["name"] == FALLBACK]
    (slack,) = fallback["slack_configs"]
    assert "api_url" not in slack
    assert Path(slack["api_url_file"]).is_absolute()


def test_the_fallback_mail_holds_no_credentials() -> None:
    (fallback,) = [r for r in repo_config()["receivers"] if r["name"] == FALLBACK]
    (mail,) = fallback["email_configs"]
    assert not {"auth_password", "auth_secret"} & set(mail)


def test_the_fallback_repeats_within_the_level_3_response_time() -> None:
    # With no receiver left nothing escalates; the repeat is the reminder (P2: Level 3, 1 h).
    (route,) = [r for r in repo_config()["route"]["routes"] if r["receiver"] == FALLBACK]
    assert route["repeat_interval"] == "1h"
    assert {ALERT_CLASSES[name]["level"] for name in AROUND_THE_RECEIVER} == {"3"}


def test_an_alert_without_any_voicedrive_label_still_reaches_the_receiver() -> None:
    # A rule added later without level or system must still page (the receiver maps it).
    assert routed_receivers("alertname=SomethingNew") == [RECEIVER]


def test_watchdog_goes_to_the_heartbeat_receiver_only() -> None:
    labels = {"alertname": "Watchdog", **ALERT_CLASSES["Watchdog"]}
    assert routed_receivers(*(f"{k}={v}" for k, v in labels.items())) == [WATCHDOG]


def test_watchdog_route_repeats_within_minutes() -> None:
    (watchdog,) = [r for r in repo_config()["route"]["routes"] if r["receiver"] == WATCHDOG]
    assert watchdog["group_wait"] == "0s"
    assert watchdog["repeat_interval"] == "1m"


def test_paging_webhook_sends_resolved_with_a_bearer_token_file() -> None:
    (receiver,) = [r for r in repo_config()["receivers"] if r["name"] == RECEIVER]
    (hook,) = receiver["webhook_configs"]
    assert hook["send_resolved"] is True
    auth = hook["http_config"]["authorization"]
    assert auth["type"] == "Bearer"
    assert "credentials_file" in auth
    assert "credentials" not in auth


def test_no_route_holds_paging_alerts_back() -> None:
    # A longer group_wait cannot make an inhibition reliable (an existing group flushes at its
    # next group_interval tick) and delays every page; the `for` order in the rules does it.
    # Besides the heartbeat, the only routes are the fallback alerts' two, and they keep the
    # root's group_wait and group_interval.
    routes = repo_config()["route"]["routes"]
    around = f'alertname=~"{"|".join(AROUND_THE_RECEIVER)}"'
    assert [(r["matchers"], r["receiver"], r.get("continue", False)) for r in routes] == [
        (['alertname="Watchdog"'], WATCHDOG, False),
        ([around], FALLBACK, True),
        ([around], RECEIVER, False),
    ]
    for route in routes[1:]:
        assert "group_wait" not in route
        assert "group_interval" not in route


def inhibited_pairs() -> set[tuple[str, str]]:
    """(source, target) alert names of every inhibit rule in alertmanager.yml."""
    pairs = set()
    for rule in repo_config()["inhibit_rules"]:
        (source,) = rule["source_matchers"]
        (target,) = rule["target_matchers"]
        for name in target.split('"')[1].split("|"):
            pairs.add((source.split('"')[1], name))
    return pairs


def declared(table: tuple[tuple[str, tuple[str, ...]], ...]) -> set[tuple[str, str]]:
    return {(source, target) for source, targets in table for target in targets}


def test_the_loader_orders_exactly_the_inhibitions_of_the_config() -> None:
    # Every inhibit rule is either `for`-ordered by the thresholds loader or declared
    # exclusive (never true together); a new rule must be added to one of the two lists.
    assert declared(INHIBITS) | declared(INHIBITS_EXCLUSIVE) == inhibited_pairs()
    assert not declared(INHIBITS) & declared(INHIBITS_EXCLUSIVE)


@pytest.mark.parametrize(("source", "target"), sorted(declared(INHIBITS)))
def test_every_inhibition_source_fires_before_its_target(source: str, target: str) -> None:
    t = load_thresholds()
    assert t.alert(source).for_seconds < t.alert(target).for_seconds


def test_system_down_is_a_full_evaluation_ahead_of_parts_one_probe_round_apart() -> None:
    # In a Level 4 outage the API and database probes turn red in the same round or one
    # scrape apart; the composite (true from the later one) must still fire at least one
    # evaluation before either part, so its inhibition is in Alertmanager when they arrive.
    t = load_thresholds()
    prometheus = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    scrape = parse_duration(prometheus["global"]["scrape_interval"], "scrape_interval")
    evaluation = parse_duration(prometheus["global"]["evaluation_interval"], "evaluation")
    composite = t.alert("VoiceDriveSystemDown").for_seconds
    for part in ("VoiceDriveAPIDown", "VoiceDriveDatabaseDown"):
        assert scrape + composite + evaluation <= t.alert(part).for_seconds


def test_webhooks_failing_window_holds_two_give_ups_one_group_interval_apart() -> None:
    # A refused notification is retried until its deadline, the group_interval but at least
    # 10 s (Alertmanager 0.25's notify.MinTimeout), and given up then; the next follows at
    # once, so a broken path gives up one per deadline (at least the Watchdog's). The window
    # must span that gap plus a scrape, or sustained failures would leave holes that restart
    # the `for`.
    t = load_thresholds()
    window = t.alert(WEBHOOKS_FAILING).param("window")
    prometheus = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    scrape = parse_duration(prometheus["global"]["scrape_interval"], "scrape_interval")
    route = repo_config()["route"]
    intervals = [parse_duration(route["group_interval"], "group_interval")]
    for child in route["routes"]:
        if "group_interval" in child:
            intervals.append(parse_duration(child["group_interval"], "group_interval"))
    assert max(*intervals, 10.0) + scrape < window


def test_prometheus_scrapes_the_alertmanager_job_webhooks_failing_reads() -> None:
    prometheus = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    jobs = {job["job_name"] for job in prometheus["scrape_configs"]}
    assert load_thresholds().settings.alertmanager_job in jobs
