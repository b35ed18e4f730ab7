"""Jinja2 templates for every channel, with a built-in plain text when a template fails.

Templates live in ``templates/{language}/{part}_{status}.j2`` (parts: ``slack``,
``email_subject``, ``email_text``, ``email_html``, ``sms``, ``phone``, ``webhook``,
``console``). An operator directory (config ``templates.directory``) with the same layout is
searched first, file by file. A template that is missing, broken or raises while rendering
never drops the page: the built-in template is tried next and, failing that, a plain text
built in Python. Each failure is logged and counted in
``voicedrive_receiver_template_errors_total{channel}``.

The context is a plain dict (see ``build_context``); ``render`` adds the language-dependent
keys (``level_name``, ``status_text``, ``respond_within``, ``watch``) and the per-channel cut
(``shown_alerts``, ``more_count``). ``respond_within`` states ``respond_seconds``, the level's
configured response deadline, or the P2 default of the level when the context has none.
"""

import functools
import logging
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from voicedrive_common.confload import Node
from voicedrive_receiver.channels.base import RenderedMessage
from voicedrive_receiver.lifecycle.escalation import DEFAULT_DEADLINES
from voicedrive_receiver.lifecycle.tokyo import Lang, format_span

log = logging.getLogger(__name__)

BUILTIN_DIRECTORY = Path(__file__).parent / "templates"
LANGUAGES = ("ja", "en")
DEFAULT_LANGUAGE = "ja"
TOKYO = ZoneInfo("Asia/Tokyo")

LEVEL_NAMES: dict[str, dict[int, str]] = {
    "ja": {1: "軽微", 2: "中程度", 3: "重大", 4: "システム停止"},
    "en": {1: "minor", 2: "medium", 3: "severe", 4: "system down"},
}
# "Respond within" as the texts word it; the span is the level's configured response deadline.
RESPOND_WITHIN: dict[str, str] = {"ja": "{span}以内", "en": "within {span}"}
STATUS_TEXT: dict[str, dict[str, str]] = {
    "ja": {"firing": "発生", "resolved": "解決"},
    "en": {"firing": "FIRING", "resolved": "RESOLVED"},
}

# Which template files make up each channel's message.
PARTS: dict[str, tuple[str, ...]] = {
    "slack": ("slack",),
    "email": ("email_subject", "email_text", "email_html"),
    "sms": ("sms",),
    "phone": ("phone",),
    "webhook": ("webhook",),
    "console": ("console",),
}
# How many alerts a channel lists before "…他 N 件" / "... and N more".
MAX_ALERTS: dict[str, int] = {
    "slack": 10,
    "email": 50,
    "sms": 1,
    "phone": 1,
    "webhook": 100,
    "console": 20,
}

# Slack limits (https://api.slack.com/reference/block-kit/blocks): 50 blocks per message,
# 3000 characters per section text; the top-level text may hold 40,000 but notifications
# show far less, so it is kept to one section's worth.
SLACK_MAX_BLOCKS = 50
SLACK_MAX_SECTION = 3000
SLACK_MAX_TEXT = 3000

_ZERO_TIME_PREFIX = "0001-01-01"
_FRACTION = re.compile(r"(\.\d{6})\d+")


@dataclass(frozen=True)
class TemplateSettings:
    """The ``templates`` config section."""

    directory: Path | None = None
    language: str = DEFAULT_LANGUAGE


def parse_template_settings(node: Node) -> TemplateSettings:
    """Read ``templates: {directory, language}``; the directory must exist."""
    directory = node.text("directory", None)
    language = node.text("language", DEFAULT_LANGUAGE, choices=LANGUAGES)
    node.done()
    path = None
    if directory is not None:
        path = Path(directory)
        if not path.is_dir():
            raise node.error("directory", f"is not a directory: {directory!r}")
    return TemplateSettings(directory=path, language=language)


class SlackSafe(str):
    """Text already escaped (or deliberately formatted) for Slack mrkdwn."""

    __slots__ = ()


def mrkdwn_escape(value: object) -> SlackSafe:
    """Escape the three characters Slack's mrkdwn treats as control: ``& < >``."""
    if isinstance(value, SlackSafe):
        return value
    text = str(value)
    return SlackSafe(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))


def slack_link(url: object, label: object = "") -> SlackSafe:
    """A Slack ``<url|label>`` link with both parts escaped."""
    target = mrkdwn_escape(url).replace("|", "%7C")
    if not label:
        return SlackSafe(f"<{target}>")
    return SlackSafe(f"<{target}|{mrkdwn_escape(label)}>")


def parse_time(value: object) -> datetime | None:
    """A timezone-aware datetime from an Alertmanager timestamp; None for the zero time."""
    if isinstance(value, datetime):
        return value if value.year > 1 else None
    if not isinstance(value, str) or not value or value.startswith(_ZERO_TIME_PREFIX):
        return None
    text = _FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=TOKYO)


def localtime(value: object, fmt: str = "%Y-%m-%d %H:%M:%S JST") -> str:
    """Format a timestamp in Asia/Tokyo; empty for "not ended" or unparsable values."""
    if type(value) is str and type(fmt) is str:
        return _localtime_text(value, fmt)
    return _localtime(value, fmt)


@functools.lru_cache(maxsize=4096)
def _localtime_text(value: str, fmt: str) -> str:
    # A pure function of two strings (the zone is fixed), asked for the same alert start in
    # every message of a group: remembered instead of parsed and formatted each time.
    return _localtime(value, fmt)


def _localtime(value: object, fmt: str) -> str:
    parsed = parse_time(value)
    if parsed is None:
        return ""
    return parsed.astimezone(TOKYO).strftime(fmt)


def build_context(
    *,
    status: str,
    level: int,
    alerts: Sequence[Mapping[str, Any]],
    group_labels: Mapping[str, str] | None = None,
    common_labels: Mapping[str, str] | None = None,
    common_annotations: Mapping[str, str] | None = None,
    incident_id: str = "",
    incident_url: str = "",
    external_url: str = "",
    group_key: str = "",
    receiver: str = "",
    watch_seconds: float = 1800.0,
    respond_seconds: float | None = None,
) -> dict[str, Any]:
    """The template context from a (stored) Alertmanager group; plain dicts and strings only."""
    plain_alerts = [_plain_alert(a) for a in alerts]
    common_labels = dict(common_labels or {})
    common_annotations = dict(common_annotations or {})
    firing = [a for a in plain_alerts if a["status"] == "firing"]
    resolved = [a for a in plain_alerts if a["status"] == "resolved"]
    first = (firing or plain_alerts or [{}])[0]
    first_labels: Mapping[str, str] = first.get("labels", {})
    first_annotations: Mapping[str, str] = first.get("annotations", {})
    summary = (
        common_annotations.get("summary")
        or first_annotations.get("summary")
        or common_labels.get("alertname")
        or first_labels.get("alertname")
        or ""
    )
    return {
        "status": status,
        "level": int(level),
        "alerts": plain_alerts,
        "firing_alerts": firing,
        "resolved_alerts": resolved,
        "alert_count": len(plain_alerts),
        "firing_count": len(firing),
        "resolved_count": len(resolved),
        "group_labels": dict(group_labels or {}),
        "common_labels": common_labels,
        "common_annotations": common_annotations,
        "alertname": common_labels.get("alertname") or first_labels.get("alertname", ""),
        "system": common_labels.get("system") or first_labels.get("system", ""),
        "component": common_labels.get("component") or first_labels.get("component", ""),
        "summary": summary,
        "description": common_annotations.get("description")
        or first_annotations.get("description", ""),
        "runbook_url": common_annotations.get("runbook_url")
        or first_annotations.get("runbook_url", ""),
        "dashboard_url": common_annotations.get("dashboard_url")
        or first_annotations.get("dashboard_url", ""),
        "incident_id": incident_id,
        "incident_url": incident_url,
        "external_url": external_url,
        "group_key": group_key,
        "receiver": receiver,
        # The recovery watch (incidents.reopen_within) that resolved messages announce.
        "watch_seconds": float(watch_seconds),
        # The level's response deadline (lifecycle.escalation.levels.N.response_deadline);
        # None: the P2 default of the level the message is rendered for.
        "respond_seconds": None if respond_seconds is None else float(respond_seconds),
    }


def _plain_alert(alert: Mapping[str, Any]) -> dict[str, Any]:
    labels = {str(k): str(v) for k, v in dict(alert.get("labels") or {}).items()}
    annotations = {str(k): str(v) for k, v in dict(alert.get("annotations") or {}).items()}
    starts = alert.get("startsAt", alert.get("starts_at", ""))
    ends = alert.get("endsAt", alert.get("ends_at", ""))
    return {
        "status": str(alert.get("status", "firing")),
        "labels": labels,
        "annotations": annotations,
        "startsAt": starts if isinstance(starts, str) else _iso(starts),
        "endsAt": ends if isinstance(ends, str) else _iso(ends),
        "generatorURL": str(alert.get("generatorURL", alert.get("generator_url", "")) or ""),
        "fingerprint": str(alert.get("fingerprint", "") or ""),
        "summary": annotations.get("summary") or labels.get("alertname", ""),
    }


def _iso(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else ""


# Context keys a hand-made context may lack; templates may rely on every one of them.
_DEFAULTS: dict[str, Any] = build_context(status="firing", level=1, alerts=())


class Renderer:
    """Renders messages from the built-in templates and an optional operator directory."""

    def __init__(
        self,
        *,
        directory: Path | str | None = None,
        registry: CollectorRegistry | None = REGISTRY,
        on_error: Callable[[str, str, BaseException], None] | None = None,
    ) -> None:
        self._sources: list[tuple[str, Path]] = []
        if directory is not None:
            self._sources.append(("override", Path(directory)))
        self._sources.append(("builtin", BUILTIN_DIRECTORY))
        self._envs: dict[tuple[str, str], jinja2.Environment] = {}
        self._errors = _error_counter(registry)
        self._on_error = on_error

    def render(
        self,
        channel_kind: str,
        status: str,
        language: str,
        context: Mapping[str, Any],
        *,
        max_alerts: int | None = None,
    ) -> RenderedMessage:
        """The message for one channel; never raises (falls back to a built-in text)."""
        try:
            language = language if language in LANGUAGES else DEFAULT_LANGUAGE
            ctx = _full_context(channel_kind, status, language, context, max_alerts)
        except Exception as exc:  # a context that cannot even be read still pages
            self._report(channel_kind, "<context>", exc)
            return _last_resort(channel_kind)
        parts = PARTS.get(channel_kind, ("console",))
        texts: dict[str, str] = {}
        for part in parts:
            texts[part] = self._render_part(channel_kind, part, status, language, ctx)
        try:
            return _assemble(channel_kind, texts)
        except Exception as exc:
            self._report(channel_kind, "<assemble>", exc)
            return _last_resort(channel_kind)

    def _render_part(
        self, channel_kind: str, part: str, status: str, language: str, ctx: dict[str, Any]
    ) -> str:
        name = f"{language}/{part}_{status}.j2"
        for source, directory in self._sources:
            if source == "override" and not (directory / name).is_file():
                continue
            try:
                env = self._env(source, directory, _flavour(part))
                return env.get_template(name).render(ctx).strip()
            except Exception as exc:
                self._report(channel_kind, f"{source}:{name}", exc)
        return _fallback_part(part, ctx)

    def _env(self, source: str, directory: Path, flavour: str) -> jinja2.Environment:
        key = (source, flavour)
        env = self._envs.get(key)
        if env is None:
            env = SandboxedEnvironment(
                loader=jinja2.FileSystemLoader(str(directory)),
                # The built-in templates are part of the installed package, like its code: one
                # compile per process, no stat of the file per render. Operator templates are
                # still checked every time, so an edit takes effect with the next message.
                auto_reload=source != "builtin",
                autoescape=flavour == "html",
                undefined=jinja2.StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
                finalize=_slack_finalize if flavour == "slack" else None,
            )
            env.filters["mrkdwn"] = mrkdwn_escape
            env.filters["slack_link"] = slack_link
            env.filters["localtime"] = localtime
            self._envs[key] = env
        return env

    def _report(self, channel_kind: str, template: str, exc: BaseException) -> None:
        # The error type and line are enough to fix a template; the message can quote context.
        lineno = getattr(exc, "lineno", None)
        log.error(
            "template failed, using fallback text: channel=%s template=%s error=%s line=%s",
            channel_kind,
            template,
            type(exc).__name__,
            lineno if lineno is not None else "-",
        )
        if self._errors is not None:
            self._errors.labels(channel=channel_kind).inc()
        if self._on_error is not None:
            try:
                self._on_error(channel_kind, template, exc)
            except Exception:  # a faulty observer must not cost the page
                log.exception("template error callback failed")


_default_renderer: Renderer | None = None


def render(
    channel_kind: str, status: str, language: str, context: Mapping[str, Any]
) -> RenderedMessage:
    """Render with the built-in templates only (see ``Renderer`` for an override directory)."""
    global _default_renderer
    if _default_renderer is None:
        _default_renderer = Renderer()
    return _default_renderer.render(channel_kind, status, language, context)


_counters: "weakref.WeakKeyDictionary[CollectorRegistry, Counter]" = weakref.WeakKeyDictionary()


def _error_counter(registry: CollectorRegistry | None) -> Counter | None:
    # prometheus_client refuses a second registration of one name, and several Renderers
    # (tests, reloads) share the default registry: one counter per registry.
    if registry is None:
        return None
    counter = _counters.get(registry)
    if counter is None:
        counter = Counter(
            "voicedrive_receiver_template_errors",
            "Templates that failed and were replaced by the built-in fallback text.",
            ["channel"],
            registry=registry,
        )
        _counters[registry] = counter
    return counter


def _flavour(part: str) -> str:
    if part == "email_html":
        return "html"
    if part == "slack":
        return "slack"
    return "plain"


def _slack_finalize(value: object) -> object:
    # Every {{ expression }} in a Slack template is escaped unless a filter marked it safe.
    if value is None:
        return ""
    return mrkdwn_escape(value)


def _full_context(
    channel_kind: str,
    status: str,
    language: str,
    context: Mapping[str, Any],
    max_alerts: int | None,
) -> dict[str, Any]:
    ctx: dict[str, Any] = {**_DEFAULTS, **context}
    ctx["status"] = status
    ctx["language"] = language
    level = int(ctx.get("level") or 1)
    ctx["level"] = level
    ctx["level_name"] = LEVEL_NAMES[language].get(level, str(level))
    ctx["level_name_ja"] = LEVEL_NAMES["ja"].get(level, str(level))
    ctx["level_name_en"] = LEVEL_NAMES["en"].get(level, str(level))
    respond = ctx.get("respond_seconds")
    ctx["respond_within"] = respond_within(
        None if respond is None else float(respond), level, language
    )
    ctx["status_text"] = STATUS_TEXT[language].get(status, status)
    ctx["watch"] = format_span(
        float(ctx.get("watch_seconds") or 0), "en" if language == "en" else "ja"
    )
    # A firing message lists what is firing; a resolved one lists the whole group.
    firing = list(ctx.get("firing_alerts") or [])
    alerts = firing if status == "firing" and firing else list(ctx.get("alerts") or [])
    limit = max_alerts if max_alerts is not None else MAX_ALERTS.get(channel_kind, 20)
    ctx["listed_alerts"] = alerts
    ctx["shown_alerts"] = alerts[: max(limit, 0)]
    ctx["more_count"] = max(len(alerts) - max(limit, 0), 0)
    ctx["channel"] = channel_kind
    return ctx


def respond_within(seconds: float | None, level: int, language: str) -> str:
    """``2時間以内`` / ``within 2 h``: ``seconds``, or the P2 deadline of ``level`` when None."""
    lang: Lang = "en" if language == "en" else "ja"
    if seconds is None:
        default = DEFAULT_DEADLINES.get(level)
        if default is None:
            return ""
        seconds = default.total_seconds()
    span = format_span(seconds, lang, hours=True)
    return RESPOND_WITHIN[lang].format(span=span)


def _assemble(channel_kind: str, texts: Mapping[str, str]) -> RenderedMessage:
    if channel_kind == "slack":
        text = texts["slack"]
        return RenderedMessage(
            text=cut_text(text, SLACK_MAX_TEXT), extra={"blocks": slack_blocks(text)}
        )
    if channel_kind == "email":
        subject = " ".join(texts["email_subject"].split())
        return RenderedMessage(subject=subject, text=texts["email_text"], html=texts["email_html"])
    part = PARTS.get(channel_kind, ("console",))[0]
    return RenderedMessage(text=texts[part])


def slack_blocks(text: str) -> list[dict[str, Any]]:
    """Section blocks from mrkdwn text: paragraphs packed up to 3000 chars, at most 50 blocks."""
    chunks: list[str] = []
    current = ""
    for paragraph in (p.strip("\n") for p in text.split("\n\n")):
        if not paragraph.strip():
            continue
        for piece in _split_long(paragraph, SLACK_MAX_SECTION):
            joined = f"{current}\n\n{piece}" if current else piece
            if len(joined) <= SLACK_MAX_SECTION:
                current = joined
            else:
                chunks.append(current)
                current = piece
    if current:
        chunks.append(current)
    if len(chunks) > SLACK_MAX_BLOCKS:
        chunks = [*chunks[: SLACK_MAX_BLOCKS - 1], "…"]
    return [{"type": "section", "text": {"type": "mrkdwn", "text": c}} for c in chunks]


def _split_long(paragraph: str, limit: int) -> list[str]:
    if len(paragraph) <= limit:
        return [paragraph]
    pieces: list[str] = []
    current = ""
    for line in paragraph.split("\n"):
        while len(line) > limit:
            if current:
                pieces.append(current)
                current = ""
            pieces.append(cut_text(line, limit))
            line = line[limit - 1 :]
        joined = f"{current}\n{line}" if current else line
        if len(joined) <= limit:
            current = joined
        else:
            pieces.append(current)
            current = line
    if current:
        pieces.append(current)
    return pieces


def cut_text(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` characters, ending in an ellipsis when cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    # Never leave half of an mrkdwn entity such as "&am" behind.
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:] and len(cut) - amp < 6:
        cut = cut[:amp]
    return cut + "…"


def _fallback_lines(ctx: Mapping[str, Any]) -> list[str]:
    language = ctx.get("language", DEFAULT_LANGUAGE)
    level = ctx.get("level", "?")
    name = ctx.get("level_name", "")
    status_text = ctx.get("status_text", ctx.get("status", ""))
    summary = ctx.get("summary", "") or ctx.get("alertname", "")
    count = ctx.get("alert_count", 0)
    if language == "en":
        head = f"[VoiceDrive] Level {level} ({name}) {status_text}: {summary}"
        lines = [head, f"Alerts: {count}"]
        if ctx.get("incident_id"):
            lines.append(f"Incident: {ctx['incident_id']}")
    else:
        head = f"[VoiceDrive] レベル{level}({name}) {status_text}: {summary}"
        lines = [head, f"アラート数: {count}"]
        if ctx.get("incident_id"):
            lines.append(f"インシデント: {ctx['incident_id']}")
    if ctx.get("incident_url"):
        lines.append(str(ctx["incident_url"]))
    return lines


def _fallback_part(part: str, ctx: Mapping[str, Any]) -> str:
    try:
        lines = _fallback_lines(ctx)
    except Exception:
        lines = ["[VoiceDrive] alert"]
    if part == "email_subject":
        return lines[0]
    if part == "email_html":
        from markupsafe import escape

        return "<html><body><pre>" + str(escape("\n".join(lines))) + "</pre></body></html>"
    if part == "slack":
        return mrkdwn_escape("\n".join(lines))
    if part in ("sms", "phone"):
        return lines[0]
    return "\n".join(lines)


def _last_resort(channel_kind: str) -> RenderedMessage:
    text = "[VoiceDrive] アラート通知 / alert notification"
    if channel_kind == "email":
        return RenderedMessage(subject=text, text=text, html=f"<p>{text}</p>")
    if channel_kind == "slack":
        return RenderedMessage(text=text, extra={"blocks": slack_blocks(text)})
    return RenderedMessage(text=text)
