"""The exporter's YAML config: typed, frozen, validated at load, defaults beside the types.

A probe runs when its section is present; ``host`` runs unless ``host: {enabled: false}``.
Every error is a ConfigError whose message starts with the key path.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from voicedrive_common.confload import Node, load_yaml, parse_yaml
from voicedrive_common.errors import ConfigError
from voicedrive_common.secrets import SecretRef

DEFAULT_INTERVAL = 30.0  # P4: the API health check runs every 30 s
DEFAULT_API_ENDPOINTS = ("/health", "/api/status")
DEFAULT_NOTIFICATION_QUERY = """\
SELECT count(*) FILTER (WHERE status = 'delivered') AS delivered,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM notification_deliveries
WHERE created_at > now() - make_interval(secs => $1)"""
_STATUS_PATTERN = re.compile(r"^[1-5](?:xx|\d\d)$")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 7230 token: a header field name
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(frozen=True)
class Schedule:
    """How often a probe runs and how long one run may take (hard limit, below the interval)."""

    interval: float = DEFAULT_INTERVAL
    timeout: float = 10.0


@dataclass(frozen=True)
class BodyCheck:
    """Pass when the JSON body's ``json_field`` (dotted path) equals ``equals``."""

    json_field: str = "status"
    equals: object = "ok"


@dataclass(frozen=True)
class TLSClient:
    """TLS settings for outgoing probe requests; verification is on unless switched off."""

    ca_file: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class Endpoint:
    """One URL the API probe checks."""

    name: str
    url: str
    method: str = "GET"
    accepted_status: tuple[str, ...] = ("2xx",)
    body_check: BodyCheck | None = BodyCheck()
    headers: tuple[tuple[str, str], ...] = ()

    def accepts(self, status: int) -> bool:
        """Whether ``status`` matches one of ``accepted_status`` (``200`` or ``2xx`` forms)."""
        code = str(status)
        return any(
            pattern == code or (pattern.endswith("xx") and pattern[0] == code[0])
            for pattern in self.accepted_status
        )


@dataclass(frozen=True)
class ApiSettings:
    """The ``api`` section."""

    endpoints: tuple[Endpoint, ...]
    schedule: Schedule = Schedule(timeout=5.0)
    max_redirects: int = 5
    max_body_bytes: int = 1 << 20
    tls: TLSClient = TLSClient()


@dataclass(frozen=True)
class PgTarget:
    """Where and how to connect to PostgreSQL; the password lives in ``dsn`` or ``password``."""

    dsn: SecretRef
    password: SecretRef | None = None
    connect_timeout: float = 3.0
    query_timeout: float = 2.0


@dataclass(frozen=True)
class DatabaseTarget:
    """One database checked by the database probe; ``name`` is the ``database`` label."""

    name: str
    pg: PgTarget


@dataclass(frozen=True)
class DatabaseSettings:
    """The ``database`` section."""

    targets: tuple[DatabaseTarget, ...]
    schedule: Schedule = Schedule()


@dataclass(frozen=True)
class NotificationSql:
    """SQL source: ``query`` gets the window in seconds as $1 and returns delivered, failed."""

    pg: PgTarget
    query: str = DEFAULT_NOTIFICATION_QUERY


@dataclass(frozen=True)
class NotificationHttp:
    """HTTP source: a JSON document holding delivered and failed counts (dotted paths)."""

    url: str
    delivered_field: str = "delivered"
    failed_field: str = "failed"
    max_body_bytes: int = 1 << 20
    tls: TLSClient = TLSClient()


@dataclass(frozen=True)
class NotificationSettings:
    """The ``notifications`` section; exactly one of ``sql`` and ``http`` is set."""

    sql: NotificationSql | None = None
    http: NotificationHttp | None = None
    window: float = 300.0
    min_volume: int = 20
    schedule: Schedule = Schedule()


@dataclass(frozen=True)
class BackupSettings:
    """The ``backup`` section: the newest file matching ``path_glob`` is the latest backup."""

    path_glob: str
    schedule: Schedule = Schedule(interval=60.0)


@dataclass(frozen=True)
class HostSettings:
    """The ``host`` section: CPU is measured over ``cpu_sample_window`` inside each run."""

    cpu_sample_window: float = 1.0
    schedule: Schedule = Schedule(interval=15.0, timeout=5.0)


@dataclass(frozen=True)
class Config:
    """The whole exporter config; a section that is None means that probe does not run."""

    api: ApiSettings | None = None
    notifications: NotificationSettings | None = None
    database: DatabaseSettings | None = None
    backup: BackupSettings | None = None
    host: HostSettings | None = field(default_factory=HostSettings)


def load_config(path: str | Path) -> Config:
    """Read and validate a config file."""
    return build_config(load_yaml(path))


def parse_config(text: str, *, source: str | None = None) -> Config:
    """Validate config text (used by tests and ``--config.check``)."""
    return build_config(parse_yaml(text, source=source))


def build_config(root: Node) -> Config:
    """Turn a parsed YAML mapping into a Config."""
    defaults = _global(root.node("global")) if root.has("global") else _Defaults()
    config = Config(
        api=_api(root.node("api"), defaults) if root.has("api") else None,
        notifications=(
            _notifications(root.node("notifications"), defaults)
            if root.has("notifications")
            else None
        ),
        database=_database(root.node("database"), defaults) if root.has("database") else None,
        backup=_backup(root.node("backup"), defaults) if root.has("backup") else None,
        host=_host(root.node("host"), defaults),
    )
    root.done()
    return config


@dataclass(frozen=True)
class _Defaults:
    interval: float | None = None
    timeout: float | None = None


def _global(node: Node) -> _Defaults:
    interval = node.duration("interval", None, lo=0.01)
    timeout = node.duration("timeout", None, lo=0.01)
    node.done()
    if interval is not None and timeout is not None and timeout >= interval:
        raise node.error("timeout", "must be below interval")
    return _Defaults(interval=interval, timeout=timeout)


def _section_schedule(node: Node, defaults: _Defaults, own: Schedule) -> Schedule:
    """The section's interval and timeout: its own keys, else ``global``, else its defaults."""
    interval = node.duration("interval", defaults.interval or own.interval, lo=0.01)
    explicit = node.has("timeout") and node.raw("timeout") is not None
    timeout = node.duration("timeout", defaults.timeout or own.timeout, lo=0.01)
    if timeout >= interval:
        if explicit or defaults.timeout is not None:
            raise node.error("timeout", "must be below interval")
        # Only the built-in default is too long for a short interval: shrink it to fit.
        timeout = interval * 0.9
    return Schedule(interval=interval, timeout=timeout)


def _url(node: Node, key: str) -> str:
    value: str = node.text(key)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise node.error(key, f"must be an http:// or https:// URL, got {value!r}")
    return value


def _tls_client(node: Node) -> TLSClient:
    tls = TLSClient(
        ca_file=node.text("ca_file", None),
        insecure_skip_verify=node.flag("insecure_skip_verify", False),
    )
    node.done()
    if tls.ca_file is not None and not Path(tls.ca_file).is_file():
        raise node.error("ca_file", f"file {tls.ca_file!r} does not exist")
    return tls


def _api(node: Node, defaults: _Defaults) -> ApiSettings:
    schedule = _section_schedule(node, defaults, ApiSettings.schedule)
    base_url = _url(node, "base_url") if node.has("base_url") else None
    tls = _tls_client(node.node("tls"))
    endpoints: list[Endpoint] = []
    if node.has("endpoints"):
        items = node.nodes("endpoints")
        if not items:
            raise node.error("endpoints", "must list at least one endpoint")
        endpoints = [_endpoint(item, base_url) for item in items]
    else:
        node.raw("endpoints", None)
        if base_url is None:
            raise node.error("base_url", "is required when endpoints are not listed")
        endpoints = [_default_endpoint(base_url, path) for path in DEFAULT_API_ENDPOINTS]
    names = [e.name for e in endpoints]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise node.error(f"endpoints[{i}].name", f"duplicate endpoint name {name!r}")
    settings = ApiSettings(
        endpoints=tuple(endpoints),
        schedule=schedule,
        max_redirects=node.integer("max_redirects", 5, lo=0, hi=20),
        max_body_bytes=node.integer("max_body_bytes", 1 << 20, lo=1),
        tls=tls,
    )
    node.done()
    return settings


def _default_endpoint(base_url: str, path: str) -> Endpoint:
    return Endpoint(name=path, url=base_url.rstrip("/") + path)


def _endpoint(node: Node, base_url: str | None) -> Endpoint:
    if node.has("url") and node.has("path"):
        raise node.error("url", "set either url or path, not both")
    if node.has("url"):
        url = _url(node, "url")
        default_name = urlsplit(url).path or "/"
    else:
        path = node.text("path")
        if not path.startswith("/"):
            raise node.error("path", f"must start with '/', got {path!r}")
        if base_url is None:
            raise node.error("path", "needs api.base_url (or give a full url)")
        url = base_url.rstrip("/") + path
        default_name = path
    accepted = _statuses(node)
    method = node.text("method", "GET", choices=("GET", "HEAD", "POST"))
    # A HEAD response has no body to check, so HEAD endpoints check only the status by default.
    check: BodyCheck | None = None if method == "HEAD" else BodyCheck()
    if node.has("body_check"):
        raw = node.raw("body_check")
        if raw is False:
            check = None
        else:
            sub = node.node("body_check")
            check = BodyCheck(json_field=sub.text("json_field", "status"), equals=sub.raw("equals"))
            sub.done()
    headers_node = node.node("headers")
    headers = tuple(_header(headers_node, key) for key in headers_node.keys())  # noqa: SIM118
    headers_node.done()
    endpoint = Endpoint(
        name=_name(node, default_name),
        url=url,
        method=method,
        accepted_status=accepted,
        body_check=check,
        headers=headers,
    )
    node.done()
    return endpoint


def _name(node: Node, default: str | None = None) -> str:
    name: str = node.text("name", default) if default is not None else node.text("name")
    if not name.strip():
        raise node.error("name", "must not be empty")
    return name


def _header(node: Node, key: str) -> tuple[str, str]:
    # aiohttp refuses CR, LF and other control characters only when sending, which would fail
    # the probe at run time; a header is checked here so --config.check catches it.
    if not _TOKEN.fullmatch(key):
        raise ConfigError(
            node.path,
            f"invalid header name {key!r}: use letters, digits and !#$%&'*+-.^_`|~ only",
            source=node.source,
        )
    value: str = node.text(key)
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
        # The value may be a credential (Authorization), so it is never echoed.
        raise node.error(key, "header value must not contain control characters (CR, LF, NUL)")
    return key, value


def _check_dsn(node: Node, dsn: str) -> None:
    """Port and sslmode of an inline DSN; never echoes the DSN (it may hold the password)."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        raise node.error("dsn", "is not a valid postgresql:// URL") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise node.error("dsn", "must be a postgresql:// URL")
    hosts = parts.netloc.rpartition("@")[2]
    for host in hosts.split(","):
        port = host.rpartition("]")[2] if host.startswith("[") else host
        if ":" not in port:
            continue
        text = port.rpartition(":")[2]
        if not text.isdigit() or not 1 <= int(text) <= 65535:
            raise node.error("dsn", "port must be a number from 1 to 65535")
    for mode in parse_qs(parts.query).get("sslmode", []):
        if mode not in SSLMODES:
            raise node.error(
                "dsn", f"sslmode must be one of {', '.join(SSLMODES)}; got {mode[:20]!r}"
            )


def _statuses(node: Node) -> tuple[str, ...]:
    raw = node.sequence("accepted_status", ["2xx"])
    out = []
    for i, item in enumerate(raw):
        text = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
        if not isinstance(text, str) or not _STATUS_PATTERN.match(text):
            raise ConfigError(
                f"{node.path}.accepted_status[{i}]",
                f"expected a status code such as 200 or a class such as 2xx, got {item!r}",
                source=node.source,
            )
        out.append(text)
    if not out:
        raise node.error("accepted_status", "must list at least one status")
    return tuple(out)


def _pg(node: Node, timeout: float) -> PgTarget:
    dsn = node.secret("dsn")
    assert dsn is not None  # required=True
    if dsn.inline is not None and "${" not in dsn.inline:
        _check_dsn(node, dsn.inline)
    target = PgTarget(
        dsn=dsn,
        password=node.secret("password", required=False),
        connect_timeout=node.duration("connect_timeout", 3.0, lo=0.01),
        query_timeout=node.duration("query_timeout", 2.0, lo=0.01),
    )
    if target.connect_timeout + target.query_timeout > timeout:
        raise node.error(
            "connect_timeout", "connect_timeout + query_timeout must not exceed the probe timeout"
        )
    return target


def _database(node: Node, defaults: _Defaults) -> DatabaseSettings:
    schedule = _section_schedule(node, defaults, DatabaseSettings.schedule)
    items = node.nodes("targets")
    if not items:
        raise node.error("targets", "must list at least one database")
    targets = []
    for item in items:
        name = _name(item)
        targets.append(DatabaseTarget(name=name, pg=_pg(item, schedule.timeout)))
        item.done()
    names = [t.name for t in targets]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise node.error(f"targets[{i}].name", f"duplicate database name {name!r}")
    node.done()
    return DatabaseSettings(targets=tuple(targets), schedule=schedule)


def _notifications(node: Node, defaults: _Defaults) -> NotificationSettings:
    schedule = _section_schedule(node, defaults, NotificationSettings.schedule)
    has_sql, has_http = node.has("sql"), node.has("http")
    if has_sql == has_http:
        raise node.error("sql", "set exactly one of sql and http")
    sql = http = None
    if has_sql:
        sub = node.node("sql")
        sql = NotificationSql(
            pg=_pg(sub, schedule.timeout),
            query=sub.text("query", DEFAULT_NOTIFICATION_QUERY),
        )
        sub.done()
    else:
        sub = node.node("http")
        http = NotificationHttp(
            url=_url(sub, "url"),
            delivered_field=sub.text("delivered_field", "delivered"),
            failed_field=sub.text("failed_field", "failed"),
            max_body_bytes=sub.integer("max_body_bytes", 1 << 20, lo=1),
            tls=_tls_client(sub.node("tls")),
        )
        sub.done()
    settings = NotificationSettings(
        sql=sql,
        http=http,
        window=node.duration("window", 300.0, lo=1.0),
        min_volume=node.integer("min_volume", 20, lo=0),
        schedule=schedule,
    )
    node.done()
    return settings


def _backup(node: Node, defaults: _Defaults) -> BackupSettings:
    schedule = _section_schedule(node, defaults, BackupSettings.schedule)
    path_glob: str = node.text("path_glob")
    if not path_glob.strip():
        raise node.error("path_glob", "must not be empty")
    settings = BackupSettings(path_glob=path_glob, schedule=schedule)
    node.done()
    return settings


def _host(node: Node, defaults: _Defaults) -> HostSettings | None:
    enabled = node.flag("enabled", True)
    schedule = _section_schedule(node, defaults, HostSettings.schedule)
    window = node.duration("cpu_sample_window", 1.0, lo=0.05)
    node.done()
    if window >= schedule.timeout:
        raise node.error("cpu_sample_window", "must be below the probe timeout")
    return HostSettings(cpu_sample_window=window, schedule=schedule) if enabled else None
