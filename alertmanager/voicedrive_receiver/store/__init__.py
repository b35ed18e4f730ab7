"""Durable state: notifications, alerts, incidents, the outbox and dead letters."""

from pathlib import Path

from voicedrive_common.errors import ConfigError
from voicedrive_receiver.config import PostgresStoreConfig, ResolvedSecrets, StoreConfig
from voicedrive_receiver.store.base import (
    ChannelStats,
    GroupState,
    Incident,
    IngestBatch,
    IngestResult,
    NewOutboxRow,
    OutboxRow,
    SqlStore,
    Store,
)
from voicedrive_receiver.store.postgres import open_postgres_store
from voicedrive_receiver.store.sqlite import open_sqlite_store

__all__ = [
    "ChannelStats",
    "GroupState",
    "Incident",
    "IngestBatch",
    "IngestResult",
    "NewOutboxRow",
    "OutboxRow",
    "SqlStore",
    "Store",
    "check_store_path",
    "open_postgres_store",
    "open_sqlite_store",
    "open_store",
]


def check_store_path(config: StoreConfig) -> None:
    """ConfigError naming the key when the SQLite file's directory does not exist."""
    if isinstance(config, PostgresStoreConfig) or config.path == ":memory:":
        return
    parent = Path(config.path).parent
    if not parent.is_dir():
        # Never created on the fly: a typo in the path would start an empty incident history.
        raise ConfigError(
            "store.sqlite.path",
            f"directory {str(parent)!r} does not exist; create it first (it is never created "
            "automatically)",
        )


async def open_store(config: StoreConfig, secrets: ResolvedSecrets) -> SqlStore:
    """The configured store, migrated."""
    if isinstance(config, PostgresStoreConfig):
        assert secrets.store_dsn is not None
        return await open_postgres_store(
            secrets.store_dsn.reveal(),
            password=secrets.store_password.reveal() if secrets.store_password else None,
            pool_min=config.pool_min,
            pool_max=config.pool_max,
            connect_timeout=config.connect_timeout,
            command_timeout=config.command_timeout,
        )
    check_store_path(config)
    return await open_sqlite_store(config.path, busy_timeout=config.busy_timeout)
