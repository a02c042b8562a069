"""ControlService: protobuf in, domain call, protobuf out. No business logic here."""

from __future__ import annotations

import grpc

from control import ping
from control.errors import ControlError, UnknownRegion
from control.memberships import MembershipService, MemberTeamUpdate, MemberUpdate
from control.ports import BatchWriterPort, RegionPort
from control.slugs import AliasHeld, MappingRejected, MappingUpdate, SlugService, SlugTaken, SwapIncomplete
from shared.db.relocation_writer import WrongSilo
from shared.ping import hops_from_proto, hops_to_proto
from shared.relocation.batch import WriteRefused
from shared.rpc.errors import ErrorTable, translate_errors
from shared.rpc.relocation import MalformedBatch, batch_from_proto, result_to_proto
from shared.rpc.v1 import common_pb2, control_pb2, control_pb2_grpc

#: The one table from control's domain errors to status codes.
ERRORS: ErrorTable = {
    UnknownRegion: grpc.StatusCode.FAILED_PRECONDITION,
    AliasHeld: grpc.StatusCode.FAILED_PRECONDITION,
    SlugTaken: grpc.StatusCode.ALREADY_EXISTS,
    SwapIncomplete: grpc.StatusCode.UNAVAILABLE,
    MappingRejected: grpc.StatusCode.FAILED_PRECONDITION,
    WriteRefused: grpc.StatusCode.INVALID_ARGUMENT,
    WrongSilo: grpc.StatusCode.FAILED_PRECONDITION,
    MalformedBatch: grpc.StatusCode.INVALID_ARGUMENT,
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
    ) -> None:
        self._regions = regions
        self._writer = writer
        self._slugs = slugs
        self._memberships = memberships

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
        return result_to_proto(self._writer.write(batch_from_proto(request)))

    @translate_errors(ERRORS)
    def BulkReserveOrganizationSlugs(
        self, request: control_pb2.BulkReserveOrganizationSlugsRequest, context: grpc.ServicerContext
    ) -> control_pb2.BulkReserveOrganizationSlugsResponse:
        if not request.import_id or not request.region_name:
            raise MalformedBatch("a slug reservation needs an import id and a region name")
        final = self._slugs.reserve(
            request.import_id, request.region_name, dict(request.slugs_by_organization_id)
        )
        return control_pb2.BulkReserveOrganizationSlugsResponse(final_slugs=final)

    @translate_errors(ERRORS)
    def UpsertOrganizationMapping(
        self, request: control_pb2.UpsertOrganizationMappingRequest, context: grpc.ServicerContext
    ) -> control_pb2.UpsertOrganizationMappingResponse:
        self._slugs.upsert_mapping(
            MappingUpdate(
                request.organization_id, request.region_name, request.slug, request.name, request.status
            )
        )
        return control_pb2.UpsertOrganizationMappingResponse()

    @translate_errors(ERRORS)
    def UpsertOrganizationMemberMapping(
        self, request: control_pb2.UpsertOrganizationMemberMappingRequest, context: grpc.ServicerContext
    ) -> control_pb2.UpsertOrganizationMemberMappingResponse:
        self._memberships.upsert_member(
            MemberUpdate(
                region_name=request.region_name,
                organization_id=request.organization_id,
                organizationmember_id=request.organizationmember_id,
                user_id=request.user_id or None,
                email=request.email or None,
                role=request.role,
                invite_status=request.invite_status,
            )
        )
        return control_pb2.UpsertOrganizationMemberMappingResponse()

    @translate_errors(ERRORS)
    def UpsertOrganizationMemberTeamReplica(
        self, request: control_pb2.UpsertOrganizationMemberTeamReplicaRequest, context: grpc.ServicerContext
    ) -> control_pb2.UpsertOrganizationMemberTeamReplicaResponse:
        self._memberships.upsert_member_team(
            MemberTeamUpdate(
                region_name=request.region_name,
                organization_id=request.organization_id,
                organizationmemberteam_id=request.organizationmemberteam_id,
                organizationmember_id=request.organizationmember_id,
                team_id=request.team_id,
                is_active=request.is_active,
            )
        )
        return control_pb2.UpsertOrganizationMemberTeamReplicaResponse()

    @translate_errors(ERRORS)
    def DrainOutbox(
        self, request: common_pb2.DrainOutboxRequest, context: grpc.ServicerContext
    ) -> common_pb2.DrainOutboxResponse:
        return common_pb2.DrainOutboxResponse(processed=self._slugs.drain_due())

    def register(self, server: grpc.Server) -> None:
        control_pb2_grpc.add_ControlServiceServicer_to_server(self, server)
