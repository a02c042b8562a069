"""The control silo's settings, built once from flags and environment in ``control.cli``."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.config import RpcSettings


@dataclass(frozen=True)
class ControlSettings:
    #: SQLAlchemy URL of the control database.
    db_url: str
    rpc: RpcSettings
    #: Region name to ``host:port``, for callbacks.
    region_addresses: dict[str, str] = field(default_factory=dict)
    #: Migrate the database on start.
    migrate: bool = True
    #: Seconds to wait for the database on start.
    db_wait_s: float = 30.0
    #: How long an outbox drainer's claim on a shard lasts unless renewed (a crashed drainer's shard waits
    #: this long); it must outlast the longest delivery call.
    outbox_lease_s: float = 60.0
    #: Processes that write import batches (0: the server's own); PostgreSQL only.
    write_workers: int = 0
