"""The region's composition root: settings in, a wired application out. Nothing connects here until
a method is called."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from region.config import RegionSettings
from region.db.schema import MIGRATIONS, claim_database
from region.rpc.control_client import GrpcControlClient
from region.rpc.servicer import RegionServicer
from shared import service
from shared.db.engine import make_engine


@dataclass
class RegionApp:
    settings: RegionSettings
    engine: Engine
    sessions: sessionmaker[Session]
    control: GrpcControlClient | None
    servicer: RegionServicer

    def prepare_database(self) -> None:
        service.prepare_database(
            self.engine,
            MIGRATIONS,
            migrate=self.settings.migrate,
            wait_s=self.settings.db_wait_s,
            check=lambda engine: claim_database(engine, self.settings.name),
        )

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
        self.engine.dispose()


def bootstrap(settings: RegionSettings) -> RegionApp:
    engine = make_engine(settings.db_url)
    control = (
        GrpcControlClient(settings.control_address, settings=settings.rpc)
        if settings.control_address
        else None
    )
    return RegionApp(
        settings=settings,
        engine=engine,
        sessions=sessionmaker(engine, expire_on_commit=False),
        control=control,
        servicer=RegionServicer(region_name=settings.name, control=control),
    )
