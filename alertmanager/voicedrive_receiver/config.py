"""The receiver's configuration: typed, frozen, validated at load with key paths in errors.

Secrets (tokens, DSN passwords, phone numbers, addresses) stay ``SecretRef`` here and are read
by ``resolve_secrets`` at start, so ``--config.check`` passes where the secrets are not set.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from voicedrive_common.confload import Node, load_yaml
from voicedrive_common.errors import ConfigError
from voicedrive_common.secrets import Secret, SecretRef
from voicedrive_receiver.channels.base import ChannelType
from voicedrive_receiver.levels import LEVELS, LevelPolicy, LevelRule
from voicedrive_receiver.lifecycle.settings import LifecycleConfig, parse_lifecycle
from voicedrive_receiver.matchers import parse_matcher
from voicedrive_receiver.rendering import TemplateSettings, parse_template_settings

CHANNEL_KINDS = ("slack", "email", "sms", "phone", "webhook", "console")
# Kinds that post to one place configured on the channel itself: a contact needs no address.
ADDRESSLESS_KINDS = frozenset({"slack", "webhook", "console"})
# on_duty: whoever the lifecycle's on-call schedule has on duty (its fallback in a gap).
AUDIENCE_KEYWORDS = ("owning_team", "owning_role", "joint_team", "on_duty")
Language = Literal["ja", "en"]


@dataclass(frozen=True)
class BearerAuth:
    """``Authorization: Bearer <token>``."""

    token: SecretRef


@dataclass(frozen=True)
class BasicAuth:
    """``Authorization: Basic``."""

    username: str
    password: SecretRef


Auth = BearerAuth | BasicAuth


@dataclass(frozen=True)
class ServerConfig:
    """HTTP side: who may post, how big a body may be, how /metrics is guarded."""

    # None only when the config says ``auth: none`` explicitly (parse_config refuses a missing one).
    auth: Auth | None = None
    # "open": anyone on the network; "same": the webhook's credentials; else its own auth.
    metrics_auth: Literal["open", "same"] | Auth = "open"
    max_body_bytes: int = 1 << 20
    # Acknowledged notifications waiting to be processed before the webhook answers 503.
    max_backlog: int = 50_000
    # Where people reach this receiver; incident links in messages start with it.
    external_url: str = ""
    # The name this replica's journal rows belong to ("" = host:port at start). A replica that
    # comes back under the same name resumes its rows at once; another takes them over only
    # after outbox.lease. Set it where host names change on restart (containers).
    instance: str = ""


@dataclass(frozen=True)
class SqliteStoreConfig:
    """The embedded default store."""

    path: str = "voicedrive-receiver.db"
    busy_timeout: float = 5.0


@dataclass(frozen=True)
class PostgresStoreConfig:
    """Shared store for several replicas."""

    dsn: SecretRef
    password: SecretRef | None = None
    pool_min: int = 1
    pool_max: int = 10
    connect_timeout: float = 5.0
    command_timeout: float = 5.0


StoreConfig = SqliteStoreConfig | PostgresStoreConfig


@dataclass(frozen=True)
class Contact:
    """A person or place to reach; addresses per channel kind, all secrets."""

    name: str
    display_name: str
    addresses: Mapping[str, SecretRef]


@dataclass(frozen=True)
class Team:
    """A responding team (P1) and the systems it owns."""

    name: str
    display_name: str
    systems: tuple[str, ...]
    members: tuple[str, ...]
    joint: bool


@dataclass(frozen=True)
class Role:
    """A role within a team (P7) and the components it owns."""

    name: str
    display_name: str
    team: str
    components: tuple[str, ...]
    members: tuple[str, ...]


@dataclass(frozen=True)
class FanoutTarget:
    """At ``level`` (and above when cumulative), send through ``channel`` to audience ``to``."""

    level: int
    channel: str
    to: tuple[str, ...]


@dataclass(frozen=True)
class FanoutConfig:
    """P6 destinations per level."""

    cumulative: bool
    targets: tuple[FanoutTarget, ...]


@dataclass(frozen=True)
class ChannelConfig:
    """One configured channel instance."""

    name: str
    kind: str
    settings: Any
    # Whether a group's resolved message goes here too (Alertmanager's name for it).
    send_resolved: bool = True


@dataclass(frozen=True)
class DeadLetterReport:
    """Where a dead letter is reported (never through the channel that failed)."""

    channel: str
    to: tuple[str, ...]


@dataclass(frozen=True)
class OutboxConfig:
    """Retry policy of the delivery worker."""

    attempts: int = 8
    backoff_base: float = 5.0
    backoff_max: float = 600.0
    jitter: float = 0.2
    lease: float = 60.0
    poll_interval: float = 1.0
    concurrency: int = 4
    dead_letter_report: tuple[DeadLetterReport, ...] = ()
    # Before resending a message whose last attempt ended without an outcome, ask channels
    # that can tell (Slack Web API, Twilio SMS) whether it already arrived.
    reconcile: bool = True
    # How far before that attempt's start the lookup reaches: the upstream's clock may differ.
    reconcile_margin: float = 60.0


@dataclass(frozen=True)
class IncidentsConfig:
    """Incident grouping."""

    # A group firing again this soon after its incident resolved reopens it (P8 step 4).
    reopen_within: float = 1800.0


@dataclass(frozen=True)
class ReceiverConfig:
    """The whole configuration file."""

    server: ServerConfig
    store: StoreConfig
    language: Language
    levels: LevelPolicy
    contacts: Mapping[str, Contact]
    teams: Mapping[str, Team]
    roles: Mapping[str, Role]
    fanout: FanoutConfig
    channels: Mapping[str, ChannelConfig]
    outbox: OutboxConfig
    incidents: IncidentsConfig
    templates: TemplateSettings = field(default_factory=TemplateSettings)
    source: str = ""
    # Issue 5: schedule, business hours, escalation, daily check (lifecycle/settings.py).
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)


@dataclass(frozen=True)
class ResolvedSecrets:
    """Secrets read at start; ``addresses`` is keyed by (contact, channel kind)."""

    auth: Secret | None
    metrics_auth: Secret | None
    store_dsn: Secret | None
    store_password: Secret | None
    addresses: Mapping[tuple[str, str], Secret] = field(default_factory=dict)


def default_channel_types() -> Mapping[str, ChannelType]:
    """The channel registry of ``voicedrive_receiver.channels``."""
    from voicedrive_receiver.channels import CHANNEL_TYPES

    types: Mapping[str, ChannelType] = CHANNEL_TYPES
    return types


def load_config(
    path: str | Path, *, channel_types: Mapping[str, ChannelType] | None = None
) -> ReceiverConfig:
    """Read and validate ``path``; ConfigError names the key path of the first problem."""
    root = load_yaml(path)
    return parse_config(root, channel_types=channel_types)


def parse_config(
    root: Node, *, channel_types: Mapping[str, ChannelType] | None = None
) -> ReceiverConfig:
    """Validate a parsed YAML root."""
    types = default_channel_types() if channel_types is None else channel_types
    server = _server(root.node("server"))
    store = _store(root.node("store"))
    language = root.text("language", "ja", choices=("ja", "en"))
    templates_node = root.node("templates")
    templates = parse_template_settings(templates_node)
    if templates_node.has("language") and templates.language != language:
        raise templates_node.error("language", f"differs from top-level language {language!r}")
    levels = _levels(root.node("levels"))
    contacts = _contacts(root.node("contacts"))
    teams = _teams(root.node("teams"), contacts)
    roles = _roles(root.node("roles"), contacts, teams)
    channels = _channels(root.node("channels"), types)
    fanout = _fanout(root.node("fanout"), channels, contacts, teams, roles)
    outbox = _outbox(root.node("outbox"), channels, contacts, teams, roles)
    incidents_node = root.node("incidents")
    incidents = IncidentsConfig(
        reopen_within=incidents_node.duration("reopen_within", 1800.0),
    )
    incidents_node.done()
    lifecycle = parse_lifecycle(
        root.node("lifecycle"),
        contacts=tuple(contacts),
        channels={name: c.kind for name, c in channels.items()},
        monitoring=incidents.reopen_within,
        base_dir=Path(root.source).parent if root.source else None,
    )
    root.done()
    server_node = root.node("server")
    # Mandatory (checked last, so other mistakes are named first): a forgotten section must not
    # silently open the endpoints that post alerts and send test SMS and calls.
    if not server_node.has("auth"):
        raise server_node.error(
            "auth",
            "is required: set bearer_token or basic, or 'none' to run without authentication "
            "(anyone reaching the port can post alerts and send test pages)",
        )
    return ReceiverConfig(
        server=server,
        store=store,
        language=language,
        levels=levels,
        contacts=contacts,
        teams=teams,
        roles=roles,
        fanout=fanout,
        channels=channels,
        outbox=outbox,
        incidents=incidents,
        templates=templates,
        source=root.source or "",
        lifecycle=lifecycle,
    )


def resolve_secrets(config: ReceiverConfig) -> ResolvedSecrets:
    """Read every secret the core needs; ConfigError names the missing variable or file."""

    def auth_secret(auth: object) -> Secret | None:
        if isinstance(auth, BearerAuth):
            return auth.token.resolve()
        if isinstance(auth, BasicAuth):
            return auth.password.resolve()
        return None

    store = config.store
    addresses = {
        (contact.name, kind): ref.resolve()
        for contact in config.contacts.values()
        for kind, ref in contact.addresses.items()
    }
    return ResolvedSecrets(
        auth=auth_secret(config.server.auth),
        metrics_auth=auth_secret(config.server.metrics_auth),
        store_dsn=store.dsn.resolve() if isinstance(store, PostgresStoreConfig) else None,
        store_password=(
            store.password.resolve()
            if isinstance(store, PostgresStoreConfig) and store.password is not None
            else None
        ),
        addresses=addresses,
    )


def _auth(node: Node) -> Auth | None:
    bearer = node.secret("bearer_token", required=False)
    basic_node = node.node("basic")
    basic: BasicAuth | None = None
    if node.has("basic"):
        password = basic_node.secret("password")
        assert password is not None
        basic = BasicAuth(username=basic_node.text("username"), password=password)
    basic_node.done()
    node.done()
    if bearer is not None and basic is not None:
        raise node.error("basic", "set either bearer_token or basic, not both")
    if bearer is not None:
        return BearerAuth(token=bearer)
    return basic


def _server(node: Node) -> ServerConfig:
    auth: Auth | None = None
    if node.has("auth") and node.raw("auth") != "none":
        if isinstance(node.raw("auth"), str):
            raise node.error("auth", "must be a mapping (bearer_token or basic) or 'none'")
        auth = _auth(node.node("auth"))
        if auth is None:
            raise node.error("auth", "needs bearer_token or basic (or 'none')")
    metrics_auth: Literal["open", "same"] | Auth = "open"
    raw = node.raw("metrics_auth", "open")
    if isinstance(raw, str):
        metrics_auth = node.text("metrics_auth", "open", choices=("open", "same"))
    else:
        own = _auth(node.node("metrics_auth"))
        if own is None:
            raise node.error("metrics_auth", "needs bearer_token or basic (or 'open' / 'same')")
        metrics_auth = own
    if metrics_auth == "same" and auth is None:
        raise node.error("metrics_auth", "'same' needs server.auth to be set")
    config = ServerConfig(
        auth=auth,
        metrics_auth=metrics_auth,
        max_body_bytes=node.integer("max_body_bytes", 1 << 20, lo=1024, hi=64 << 20),
        max_backlog=node.integer("max_backlog", 50_000, lo=1, hi=10_000_000),
        external_url=node.text("external_url", "").rstrip("/"),
        instance=_instance(node),
    )
    node.done()
    return config


_INSTANCE = re.compile(r"[A-Za-z0-9._:-]{1,200}")


def _instance(node: Node) -> str:
    value: str = node.text("instance", "")
    if value and not _INSTANCE.fullmatch(value):
        raise node.error(
            "instance", "must be 1-200 letters, digits or . _ : - (a host name, a pod name)"
        )
    return value


def _store(node: Node) -> StoreConfig:
    if node.has("sqlite") and node.has("postgres"):
        raise node.error("postgres", "set either store.sqlite or store.postgres, not both")
    if node.has("postgres"):
        pg = node.node("postgres")
        dsn = pg.secret("dsn")
        assert dsn is not None
        pg_config = PostgresStoreConfig(
            dsn=dsn,
            password=pg.secret("password", required=False),
            pool_min=pg.integer("pool_min", 1, lo=1, hi=100),
            pool_max=pg.integer("pool_max", 10, lo=1, hi=100),
            connect_timeout=pg.duration("connect_timeout", 5.0, lo=0.1),
            command_timeout=pg.duration("command_timeout", 5.0, lo=0.1),
        )
        config: StoreConfig = pg_config
        if pg_config.pool_min > pg_config.pool_max:
            raise pg.error("pool_min", "must not exceed pool_max")
        pg.done()
    else:
        lite = node.node("sqlite")
        config = SqliteStoreConfig(
            path=lite.text("path", "voicedrive-receiver.db"),
            busy_timeout=lite.duration("busy_timeout", 5.0, lo=0.0),
        )
        lite.done()
    node.done()
    return config


def _level(node: Node, key: str, default: Any = None) -> int:
    value = node.raw(key, default)
    if isinstance(value, str) and value.strip() in ("1", "2", "3", "4"):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value in LEVELS:
        return value
    raise node.error(key, f"must be a level 1, 2, 3 or 4, got {value!r}")


def _levels(node: Node) -> LevelPolicy:
    default = _level(node, "default", 2)
    rules = []
    for rule in node.nodes("rules", []):
        matchers = tuple(
            parse_matcher(text, f"{rule.path}.matchers[{i}]")
            for i, text in enumerate(rule.texts("matchers"))
        )
        if not matchers:
            raise rule.error("matchers", "needs at least one matcher")
        rules.append(LevelRule(matchers=matchers, level=_level(rule, "level")))
        rule.done()
    node.done()
    return LevelPolicy(default=default, rules=tuple(rules))


def _contacts(node: Node) -> dict[str, Contact]:
    contacts = {}
    for name, item in node.items():
        addresses = {}
        for kind in CHANNEL_KINDS:
            ref = item.secret(kind, required=False)
            if ref is not None:
                addresses[kind] = ref
        contacts[name] = Contact(
            name=name,
            display_name=item.text("display_name", name),
            addresses=addresses,
        )
        item.done()
    return contacts


def _members(node: Node, key: str, contacts: Mapping[str, Contact]) -> tuple[str, ...]:
    members: tuple[str, ...] = node.texts(key, ())
    for i, member in enumerate(members):
        if member not in contacts:
            raise ConfigError(
                f"{node.path}.{key}[{i}]", f"unknown contact {member!r}", source=node.source
            )
    return members


def _teams(node: Node, contacts: Mapping[str, Contact]) -> dict[str, Team]:
    teams = {}
    for name, item in node.items():
        teams[name] = Team(
            name=name,
            display_name=item.text("display_name", name),
            systems=item.texts("systems", ()),
            members=_members(item, "members", contacts),
            joint=item.flag("joint", True),
        )
        item.done()
    return teams


def _roles(
    node: Node, contacts: Mapping[str, Contact], teams: Mapping[str, Team]
) -> dict[str, Role]:
    roles = {}
    for name, item in node.items():
        team = item.text("team")
        if team not in teams:
            raise item.error("team", f"unknown team {team!r}")
        roles[name] = Role(
            name=name,
            display_name=item.text("display_name", name),
            team=team,
            components=item.texts("components", ()),
            members=_members(item, "members", contacts),
        )
        item.done()
    return roles


def _channels(node: Node, types: Mapping[str, ChannelType]) -> dict[str, ChannelConfig]:
    channels = {}
    for name, item in node.items():
        kind = item.text("type", choices=tuple(sorted(types)) or ("<none registered>",))
        # A call about a recovery wakes someone for nothing: phone channels default to no.
        send_resolved = item.flag("send_resolved", kind != "phone")
        settings = types[kind].parse(item)
        item.done()
        channels[name] = ChannelConfig(
            name=name, kind=kind, settings=settings, send_resolved=send_resolved
        )
    return channels


def _audience(
    node: Node,
    key: str,
    *,
    channel: ChannelConfig,
    contacts: Mapping[str, Contact],
    teams: Mapping[str, Team],
    roles: Mapping[str, Role],
) -> tuple[str, ...]:
    audience: tuple[str, ...] = node.texts(key)
    if not audience:
        raise node.error(key, "needs at least one recipient")
    for i, item in enumerate(audience):
        where = f"{node.path}.{key}[{i}]"
        if item in AUDIENCE_KEYWORDS:
            continue
        prefix, _, rest = item.partition(":")
        if prefix == "team" and rest:
            if rest not in teams:
                raise ConfigError(where, f"unknown team {rest!r}", source=node.source)
            continue
        if prefix == "role" and rest:
            if rest not in roles:
                raise ConfigError(where, f"unknown role {rest!r}", source=node.source)
            continue
        if item not in contacts:
            raise ConfigError(
                where,
                f"unknown contact {item!r} (or use team:NAME, role:NAME, "
                f"{', '.join(AUDIENCE_KEYWORDS)})",
                source=node.source,
            )
        contact = contacts[item]
        if channel.kind not in ADDRESSLESS_KINDS and channel.kind not in contact.addresses:
            raise ConfigError(
                where,
                f"contact {item!r} has no {channel.kind} address for channel {channel.name!r}",
                source=node.source,
            )
    return audience


def _channel_ref(node: Node, channels: Mapping[str, ChannelConfig]) -> ChannelConfig:
    name = node.text("channel")
    if name not in channels:
        known = ", ".join(sorted(channels)) or "none configured"
        raise node.error("channel", f"unknown channel {name!r} (known: {known})")
    return channels[name]


def _fanout(
    node: Node,
    channels: Mapping[str, ChannelConfig],
    contacts: Mapping[str, Contact],
    teams: Mapping[str, Team],
    roles: Mapping[str, Role],
) -> FanoutConfig:
    cumulative = node.flag("cumulative", True)
    targets = []
    for item in node.nodes("targets", []):
        channel = _channel_ref(item, channels)
        targets.append(
            FanoutTarget(
                level=_level(item, "level"),
                channel=channel.name,
                to=_audience(
                    item, "to", channel=channel, contacts=contacts, teams=teams, roles=roles
                ),
            )
        )
        item.done()
    node.done()
    return FanoutConfig(cumulative=cumulative, targets=tuple(targets))


def _outbox(
    node: Node,
    channels: Mapping[str, ChannelConfig],
    contacts: Mapping[str, Contact],
    teams: Mapping[str, Team],
    roles: Mapping[str, Role],
) -> OutboxConfig:
    reports = []
    for item in node.nodes("dead_letter_report", []):
        channel = _channel_ref(item, channels)
        reports.append(
            DeadLetterReport(
                channel=channel.name,
                to=_audience(
                    item, "to", channel=channel, contacts=contacts, teams=teams, roles=roles
                ),
            )
        )
        item.done()
    config = OutboxConfig(
        attempts=node.integer("attempts", 8, lo=1, hi=1000),
        backoff_base=node.duration("backoff_base", 5.0, lo=0.001),
        backoff_max=node.duration("backoff_max", 600.0, lo=0.001),
        jitter=node.number("jitter", 0.2, lo=0.0, hi=1.0),
        lease=node.duration("lease", 60.0, lo=1.0),
        poll_interval=node.duration("poll_interval", 1.0, lo=0.01),
        concurrency=node.integer("concurrency", 4, lo=1, hi=64),
        dead_letter_report=tuple(reports),
        reconcile=node.flag("reconcile", True),
        reconcile_margin=node.duration("reconcile_margin", 60.0, lo=0.0),
    )
    if config.backoff_max < config.backoff_base:
        raise node.error("backoff_max", "must be at least backoff_base")
    node.done()
    return config
