"""Alembic migrations, run programmatically: each silo has its own script folder and version table.

Alembic (with Mako and Pygments, a tenth of a second of start-up) is loaded only when a database is
not at the head revision already: a process whose database is current (an import, a server restarting)
lists its tables and reads the version table instead.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import ColumnClause, Connection, Engine, MetaData, column, inspect, select, table, text

from shared.errors import SchemaMismatch

if TYPE_CHECKING:
    from alembic.config import Config


@dataclass(frozen=True)
class MigrationSet:
    """One silo's migrations."""

    #: Folder holding ``env.py`` and ``versions/``.
    script_location: Path
    #: Alembic's version table for this silo (distinct per silo, so schemas never mix).
    version_table: str
    metadata: MetaData
    #: The newest revision among the scripts, as Alembic finds it (a test holds the two equal): a
    #: database at it is left alone without loading Alembic.
    head_revision: str
    #: Tables that mark a database as another silo's; their presence stops any migration.
    foreign_markers: tuple[str, ...] = ()

    def config(self, connection: Connection | None = None) -> Config:
        from alembic.config import Config  # noqa: PLC0415 - loaded only to migrate (module docstring)

        config = Config()
        config.set_main_option("script_location", str(self.script_location))
        config.attributes["connection"] = connection
        config.attributes["metadata"] = self.metadata
        config.attributes["version_table"] = self.version_table
        return config

    def head(self) -> str | None:
        from alembic.script import ScriptDirectory  # noqa: PLC0415 - see the module docstring

        return ScriptDirectory.from_config(self.config()).get_current_head()

    def refuse_foreign(self, connection: Connection) -> set[str]:
        """Raise if the database holds another silo's tables; the names of its tables otherwise."""
        tables = set(inspect(connection).get_table_names())
        present = tables & set(self.foreign_markers)
        if present:
            raise SchemaMismatch(
                f"this database holds another silo's tables ({', '.join(sorted(present))}): "
                "give each silo its own database"
            )
        return tables

    def _recorded(self, connection: Connection) -> str | None:
        """The revision the version table holds (None for a database never migrated)."""
        if self.version_table not in self.refuse_foreign(connection):
            return None
        version: ColumnClause[str] = column("version_num")
        versions = connection.execute(select(version).select_from(table(self.version_table))).scalars().all()
        # Several rows (branches, which this project does not have) never equal the head: Alembic decides.
        return ",".join(sorted(versions)) or None

    def current(self, engine: Engine) -> str | None:
        with engine.connect() as connection:
            return self._recorded(connection)

    def is_current(self, engine: Engine) -> bool:
        return self.current(engine) == self.head_revision

    def upgrade(self, engine: Engine, revision: str = "head") -> None:
        if revision == "head" and self.is_current(engine):
            return  # nothing to do, and Alembic stays unloaded
        from alembic import command  # noqa: PLC0415 - see the module docstring

        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Several processes may start at once on one database: one migrates, the others wait.
                key = zlib.crc32(self.version_table.encode())
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            self.refuse_foreign(connection)
            command.upgrade(self.config(connection), revision)

    def downgrade(self, engine: Engine, revision: str) -> None:
        from alembic import command  # noqa: PLC0415 - see the module docstring

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
