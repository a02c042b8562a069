"""Control's composition root: settings in, a wired application out. Nothing connects here until a
method is called."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from control.config import ControlSettings
from control.db.models import IMPORT_CHUNKS, RELOCATION_TABLES
from control.db.schema import MIGRATIONS, claim_database
from control.exports import ExportService
from control.memberships import MembershipService
from control.rpc.region_client import GrpcRegionClients
from control.rpc.servicer import ControlServicer
from control.slugs import SlugService
from control.write_pool import WritePool
from shared import service
from shared.db.engine import make_engine
from shared.db.relocation_writer import BatchWriter
from shared.errors import ConfigError


@dataclass
class ControlApp:
    settings: ControlSettings
    engine: Engine
    sessions: sessionmaker[Session]
    regions: GrpcRegionClients
    slugs: SlugService
    servicer: ControlServicer
    write_pool: WritePool | None = None

    def prepare_database(self) -> None:
        """Wait for the database and migrate it; then start the write workers, if any."""
        service.prepare_database(
            self.engine,
            MIGRATIONS,
            migrate=self.settings.migrate,
            wait_s=self.settings.db_wait_s,
            check=claim_database,
        )
        if self.write_pool is not None:
            self.write_pool.start()

    def close(self) -> None:
        if self.write_pool is not None:
            self.write_pool.close()
        self.regions.close()
        self.engine.dispose()


def bootstrap(settings: ControlSettings) -> ControlApp:
    engine = make_engine(settings.db_url)
    regions = GrpcRegionClients(settings.region_addresses, settings=settings.rpc)
    slugs = SlugService(engine, regions, outbox_lease_s=settings.outbox_lease_s)
    write_pool = None
    if settings.write_workers:
        if engine.dialect.name != "postgresql":
            raise ConfigError(
                "--write-workers needs PostgreSQL: SQLite takes one writer at a time, so the workers "
                "would only wait for one another"
            )
        write_pool = WritePool(settings.db_url, settings.write_workers)
    return ControlApp(
        settings=settings,
        engine=engine,
        sessions=sessionmaker(engine, expire_on_commit=False),
        regions=regions,
        slugs=slugs,
        servicer=ControlServicer(
            regions=regions,
            writer=BatchWriter(engine, RELOCATION_TABLES, IMPORT_CHUNKS),
            slugs=slugs,
            memberships=MembershipService(engine),
            exports=ExportService(engine, RELOCATION_TABLES),
            write_pool=write_pool,
        ),
        write_pool=write_pool,
    )
