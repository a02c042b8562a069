"""The region's composition root: settings in, a wired application out. Nothing connects here until
a method is called."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TextIO

from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session, sessionmaker

from region.config import RegionSettings
from region.db.ledger import SqlImportLedger
from region.db.models import IMPORT_CHUNKS, RELOCATION_TABLES, ImportedOrganizationSlug
from region.db.schema import MIGRATIONS, claim_database
from region.delivery_process import DeliveryProcess
from region.errors import ControlNotConfigured
from region.importer.engine import ImportEngine
from region.importer.options import ImportOptions
from region.importer.ports import Progress
from region.organizations import OrganizationService, organization_shard, produce_outbox
from region.rpc.control_client import ControlBatchWriter, GrpcControlClient
from region.rpc.servicer import RegionServicer
from shared import service
from shared.db.among import among_parts
from shared.db.delivery import BackgroundDelivery
from shared.db.engine import make_engine
from shared.db.relocation_writer import BatchWriter
from shared.relocation.findings import FindingsLog
from shared.relocation.spec import Silo


@dataclass
class RegionApp:
    settings: RegionSettings
    engine: Engine
    sessions: sessionmaker[Session]
    control: GrpcControlClient | None
    organizations: OrganizationService
    servicer: RegionServicer
    #: What ``close`` stops besides (an import's delivery process).
    _closing: list[Callable[[], None]] = field(default_factory=list)

    def prepare_database(self) -> None:
        service.prepare_database(
            self.engine,
            MIGRATIONS,
            migrate=self.settings.migrate,
            wait_s=self.settings.db_wait_s,
            check=lambda engine: claim_database(engine, self.settings.name),
        )

    def import_engine(
        self,
        options: ImportOptions,
        *,
        open_source: Callable[[], AbstractContextManager[TextIO]],
        source_name: str,
        progress: Progress,
        findings: FindingsLog,
        delivery_process: DeliveryProcess | None = None,
    ) -> ImportEngine:
        """The import engine, writing region models here and control models through control (on
        PostgreSQL, its outbox delivered by ``delivery_process``, or one made here)."""
        if self.control is None:
            raise ControlNotConfigured("an import needs the control silo: give --control-address")
        # Each batch's messages to control (members, team memberships) are delivered on a thread of
        # their own while the next batch is written; the engine settles it at the end, so the import
        # still ends with control up to date.
        organizations = self.organizations
        # On PostgreSQL the drains run in a process of their own, off the importer's interpreter.
        remote = None
        if self.engine.dialect.name == "postgresql":
            remote = delivery_process or DeliveryProcess(self.settings)
            remote.fallback = organizations.deliver
            self._closing.append(remote.close)
        delivery = BackgroundDelivery(
            organizations.outbox, organizations.handle, drain=None if remote is None else remote.drain
        )
        return ImportEngine(
            options,
            open_source=open_source,
            source_name=source_name,
            writers={
                Silo.REGION: BatchWriter(
                    self.engine,
                    RELOCATION_TABLES,
                    IMPORT_CHUNKS,
                    after_insert=produce_outbox,
                    unit_of_work=lambda: organizations.unit_of_work(delivery),
                    settle=delivery.close,
                ),
                Silo.CONTROL: ControlBatchWriter(self.control),
            },
            ledger=SqlImportLedger(self.sessions),
            slugs=ImportSlugs(self.organizations, self.control, region_name=self.settings.name),
            progress=progress,
            findings=findings,
        )

    def close(self) -> None:
        while self._closing:
            self._closing.pop()()
        if self.control is not None:
            self.control.close()
        self.engine.dispose()


class ImportSlugs:
    """The import's slug step: drain the organizations' outbox shards (so control's callback finds no
    backlog), ask control to reserve their slugs, record the answer against the import, and drain the
    shards again: the region queued each organization's mapping as its PRIMARY reservation's replica
    arrived (``OrganizationService.upsert_replicas``), and this delivers them now."""

    def __init__(
        self,
        organizations: OrganizationService,
        control: GrpcControlClient,
        *,
        region_name: str,
        timeout_s: float = 120.0,
    ) -> None:
        self._organizations, self._control = organizations, control
        self._region, self._timeout = region_name, timeout_s

    def reserve(self, import_id: str, wanted: Mapping[int, str]) -> dict[int, str]:
        self.deliver_rest(list(wanted))
        # The organizations hold the slugs they ask for here (the import wrote them so), so control
        # reserves a slug that is free everywhere without a rename callback.
        final = self._control.reserve_slugs(
            import_id, self._region, dict(wanted), timeout_s=self._timeout, held_in_region=True
        )
        with self._organizations.unit_of_work() as work:
            record_slugs(work.session, import_id, final)
            work.commit()
        self.deliver_rest(list(final))
        return final

    def deliver_rest(self, organization_ids: Sequence[int]) -> None:
        """Everything queued in these organizations' outbox shards, delivered now (waiting for shards
        another drainer holds): before the slug call, the mappings its answer queued after it, and at
        the import's end what its deliveries left."""
        self._organizations.drain(
            [organization_shard(organization_id) for organization_id in organization_ids]
        )


def record_slugs(session: Session, import_id: str, final: Mapping[int, str]) -> None:
    """Record the import's final slugs in the session's transaction: the rows there are read in bulk and
    updated, the others inserted with one statement (a retry records the same answer again)."""
    ids = sorted(final)
    recorded: dict[int, ImportedOrganizationSlug] = {}
    dialect = session.get_bind().dialect.name
    for condition in among_parts(dialect, ImportedOrganizationSlug.organization_id, ids):
        for row in session.scalars(
            select(ImportedOrganizationSlug).where(
                ImportedOrganizationSlug.import_id == import_id,
                condition,
            )
        ):
            recorded[row.organization_id] = row
    fresh = []
    for organization_id in ids:
        held = recorded.get(organization_id)
        if held is None:
            fresh.append(
                {
                    "import_id": import_id,
                    "organization_id": organization_id,
                    "slug": final[organization_id],
                }
            )
        else:
            held.slug = final[organization_id]
    if fresh:
        session.execute(insert(ImportedOrganizationSlug), fresh)


def bootstrap(settings: RegionSettings) -> RegionApp:
    engine = make_engine(settings.db_url)
    control = (
        GrpcControlClient(settings.control_address, settings=settings.rpc)
        if settings.control_address
        else None
    )
    organizations = OrganizationService(
        engine, control, region_name=settings.name, outbox_lease_s=settings.outbox_lease_s
    )
    return RegionApp(
        settings=settings,
        engine=engine,
        sessions=sessionmaker(engine, expire_on_commit=False),
        control=control,
        organizations=organizations,
        servicer=RegionServicer(region_name=settings.name, control=control, organizations=organizations),
    )
