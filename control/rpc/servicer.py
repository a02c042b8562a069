"""ControlService: protobuf in, domain call, protobuf out. No business logic here."""

from __future__ import annotations

import grpc

from control import ping
from control.errors import ControlError, UnknownRegion
from control.exports import ExportService, NotExportable
from control.memberships import MembershipService, MemberTeamUpdate, MemberUpdate
from control.ports import BatchWriterPort, RegionPort
from control.slugs import AliasHeld, MappingRejected, MappingUpdate, SlugService, SlugTaken, SwapIncomplete
from control.write_pool import WorkerLost, WritePool
from shared.db.relocation_writer import WrongSilo
from shared.ping import hops_from_proto, hops_to_proto
from shared.relocation.batch import WriteRefused
from shared.relocation.pages import BadFilter
from shared.rpc.errors import ErrorTable, translate_errors
from shared.rpc.export import MalformedExportRequest, filters_from_proto, page_to_proto
from shared.rpc.relocation import MalformedBatch, batch_from_proto, result_to_proto
from shared.rpc.v1 import common_pb2, control_pb2, control_pb2_grpc, export_pb2

#: The one table from control's domain errors to status codes.
ERRORS: ErrorTable = {
    UnknownRegion: grpc.StatusCode.FAILED_PRECONDITION,
    AliasHeld: grpc.StatusCode.FAILED_PRECONDITION,
    SlugTaken: grpc.StatusCode.ALREADY_EXISTS,
    SwapIncomplete: grpc.StatusCode.UNAVAILABLE,
    WorkerLost: grpc.StatusCode.UNAVAILABLE,
    MappingRejected: grpc.StatusCode.FAILED_PRECONDITION,
    WriteRefused: grpc.StatusCode.INVALID_ARGUMENT,
    WrongSilo: grpc.StatusCode.FAILED_PRECONDITION,
    MalformedBatch: grpc.StatusCode.INVALID_ARGUMENT,
    NotExportable: grpc.StatusCode.INVALID_ARGUMENT,
    BadFilter: grpc.StatusCode.INVALID_ARGUMENT,
    MalformedExportRequest: grpc.StatusCode.INVALID_ARGUMENT,
    ControlError: grpc.StatusCode.FAILED_PRECONDITION,
}


class ControlServicer(control_pb2_grpc.ControlServiceServicer):
    def __init__(
        self,
        *,
        regions: RegionPort,
        writer: BatchWriterPort,
        slugs: SlugService,
        memberships: MembershipService,
        exports: ExportService,
        write_pool: WritePool | None = None,
    ) -> None:
        self._regions = regions
        self._writer = writer
        #: Write import batches in worker processes (instead of ``writer``, in this one).
        self._write_pool = write_pool
        self._slugs = slugs
        self._memberships = memberships
        self._exports = exports

    @translate_errors(ERRORS)
    def Ping(self, request: common_pb2.PingRequest, context: grpc.ServicerContext) -> common_pb2.PingResponse:
        path = ping.ping(
            hops_from_proto(request.path),
            request.bounces,
            origin_region=request.origin_region,
            regions=self._regions,
        )
        return common_pb2.PingResponse(path=hops_to_proto(path))

    @translate_errors(ERRORS)
    def ImportModelBatch(
        self, request: control_pb2.ImportModelBatchRequest, context: grpc.ServicerContext
    ) -> control_pb2.ImportModelBatchResponse:
        if self._write_pool is not None:
            return self._write_pool.write(request)
        return result_to_proto(self._writer.write(batch_from_proto(request)))

    @translate_errors(ERRORS)
    def BulkReserveOrganizationSlugs(
        self, request: control_pb2.BulkReserveOrganizationSlugsRequest, context: grpc.ServicerContext
    ) -> control_pb2.BulkReserveOrganizationSlugsResponse:
        if not request.import_id or not request.region_name:
            raise MalformedBatch("a slug reservation needs an import id and a region name")
        final = self._slugs.reserve(
            request.import_id,
            request.region_name,
            dict(request.slugs_by_organization_id),
            held_in_region=request.slugs_held_in_region,
        )
        return control_pb2.BulkReserveOrganizationSlugsResponse(final_slugs=final)

    @translate_errors(ERRORS)
    def UpsertOrganizationMappings(
        self, request: control_pb2.UpsertOrganizationMappingsRequest, context: grpc.ServicerContext
    ) -> control_pb2.UpsertOrganizationMappingsResponse:
        rejected = self._slugs.upsert_mappings(
            [
                MappingUpdate(m.organization_id, m.region_name, m.slug, m.name, m.status)
                for m in request.mappings
            ]
        )
        return control_pb2.UpsertOrganizationMappingsResponse(rejected_organization_ids=rejected)

    @translate_errors(ERRORS)
    def UpsertOrganizationMemberMappings(
        self, request: control_pb2.UpsertOrganizationMemberMappingsRequest, context: grpc.ServicerContext
    ) -> control_pb2.UpsertOrganizationMemberMappingsResponse:
        self._memberships.upsert_members(
            [
                MemberUpdate(
                    region_name=m.region_name,
                    organization_id=m.organization_id,
                    organizationmember_id=m.organizationmember_id,
                    user_id=m.user_id or None,
                    email=m.email or None,
                    role=m.role,
                    invite_status=m.invite_status,
                )
                for m in request.members
            ]
        )
        return control_pb2.UpsertOrganizationMemberMappingsResponse()

    @translate_errors(ERRORS)
    def UpsertOrganizationMemberTeamReplicas(
        self, request: control_pb2.UpsertOrganizationMemberTeamReplicasRequest, context: grpc.ServicerContext
    ) -> control_pb2.UpsertOrganizationMemberTeamReplicasResponse:
        self._memberships.upsert_member_teams(
            [
                MemberTeamUpdate(
                    region_name=t.region_name,
                    organization_id=t.organization_id,
                    organizationmemberteam_id=t.organizationmemberteam_id,
                    organizationmember_id=t.organizationmember_id,
                    team_id=t.team_id,
                    is_active=t.is_active,
                )
                for t in request.member_teams
            ]
        )
        return control_pb2.UpsertOrganizationMemberTeamReplicasResponse()

    @translate_errors(ERRORS)
    def DrainOutbox(
        self, request: common_pb2.DrainOutboxRequest, context: grpc.ServicerContext
    ) -> common_pb2.DrainOutboxResponse:
        return common_pb2.DrainOutboxResponse(processed=self._slugs.drain_due())

    @translate_errors(ERRORS)
    def ExportModel(
        self, request: export_pb2.ExportModelRequest, context: grpc.ServicerContext
    ) -> export_pb2.ExportModelResponse:
        page = self._exports.page(
            request.model,
            after_pk=request.after_pk,
            limit=request.limit,
            filters=filters_from_proto(request.filters),
        )
        return page_to_proto(page)

    def register(self, server: grpc.Server) -> None:
        control_pb2_grpc.add_ControlServiceServicer_to_server(self, server)
