"""Alembic migrations, run programmatically: each silo has its own script folder and version table."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, inspect, text

from shared.errors import SchemaMismatch


@dataclass(frozen=True)
class MigrationSet:
    """One silo's migrations."""

    #: Folder holding ``env.py`` and ``versions/``.
    script_location: Path
    #: Alembic's version table for this silo (distinct per silo, so schemas never mix).
    version_table: str
    metadata: MetaData
    #: Tables that mark a database as another silo's; their presence stops any migration.
    foreign_markers: tuple[str, ...] = ()

    def config(self, connection: Connection | None = None) -> Config:
        config = Config()
        config.set_main_option("script_location", str(self.script_location))
        config.attributes["connection"] = connection
        config.attributes["metadata"] = self.metadata
        config.attributes["version_table"] = self.version_table
        return config

    def head(self) -> str | None:
        return ScriptDirectory.from_config(self.config()).get_current_head()

    def refuse_foreign(self, connection: Connection) -> None:
        present = set(inspect(connection).get_table_names()) & set(self.foreign_markers)
        if present:
            raise SchemaMismatch(
                f"this database holds another silo's tables ({', '.join(sorted(present))}): "
                "give each silo its own database"
            )

    def current(self, engine: Engine) -> str | None:
        with engine.connect() as connection:
            self.refuse_foreign(connection)
            context = MigrationContext.configure(connection, opts={"version_table": self.version_table})
            return context.get_current_revision()

    def is_current(self, engine: Engine) -> bool:
        return self.current(engine) == self.head()

    def upgrade(self, engine: Engine, revision: str = "head") -> None:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Several processes may start at once on one database: one migrates, the others wait.
                key = zlib.crc32(self.version_table.encode())
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            self.refuse_foreign(connection)
            command.upgrade(self.config(connection), revision)

    def downgrade(self, engine: Engine, revision: str) -> None:
        with engine.begin() as connection:
            command.downgrade(self.config(connection), revision)


def run_env() -> None:
    """The body of every silo's ``env.py``: migrate on the connection the caller passed in."""
    from alembic import context  # noqa: PLC0415 - only valid inside an Alembic run

    config = context.config
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("siloport migrations run through `siloport control|region migrate`")
    metadata: MetaData = config.attributes["metadata"]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=config.attributes["version_table"],
        include_name=lambda name, type_, _parent: type_ != "table" or name in metadata.tables,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
