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
from shared import service
from shared.db.engine import make_engine
from shared.db.relocation_writer import BatchWriter


@dataclass
class ControlApp:
    settings: ControlSettings
    engine: Engine
    sessions: sessionmaker[Session]
    regions: GrpcRegionClients
    slugs: SlugService
    servicer: ControlServicer

    def prepare_database(self) -> None:
        service.prepare_database(
            self.engine,
            MIGRATIONS,
            migrate=self.settings.migrate,
            wait_s=self.settings.db_wait_s,
            check=claim_database,
        )

    def close(self) -> None:
        self.regions.close()
        self.engine.dispose()


def bootstrap(settings: ControlSettings) -> ControlApp:
    engine = make_engine(settings.db_url)
    regions = GrpcRegionClients(settings.region_addresses, settings=settings.rpc)
    slugs = SlugService(engine, regions, outbox_lease_s=settings.outbox_lease_s)
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
        ),
    )
