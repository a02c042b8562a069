"""The region silo's settings, built once from flags and environment in ``region.cli``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.config import RpcSettings
from shared.errors import ConfigError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class RegionSettings:
    #: This region's name; control routes callbacks by it and the database remembers it.
    name: str
    #: SQLAlchemy URL of the region database.
    db_url: str
    #: ``host:port`` of the control silo, or None when this region cannot reach control.
    control_address: str | None
    rpc: RpcSettings
    #: Migrate the database on start.
    migrate: bool = True
    #: Seconds to wait for the database on start.
    db_wait_s: float = 30.0
    #: How long an outbox drainer's claim on a shard lasts unless renewed (see ControlSettings).
    outbox_lease_s: float = 60.0

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"region name {self.name!r}: use 1-63 lower-case letters, digits, '-' or '_'")
