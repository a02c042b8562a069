"""RegionService: protobuf in, domain call, protobuf out. No business logic here."""

from __future__ import annotations

import grpc

from region import ping
from region.errors import ControlNotConfigured, RegionError
from region.organizations import OrganizationService, ReplicaUpdate, UnknownOrganization
from region.ports import ControlPort
from shared.ping import hops_from_proto, hops_to_proto
from shared.rpc.errors import ErrorTable, translate_errors
from shared.rpc.v1 import common_pb2, region_pb2, region_pb2_grpc

#: The one table from the region's domain errors to status codes.
ERRORS: ErrorTable = {
    ControlNotConfigured: grpc.StatusCode.FAILED_PRECONDITION,
    UnknownOrganization: grpc.StatusCode.NOT_FOUND,
    RegionError: grpc.StatusCode.FAILED_PRECONDITION,
}


class RegionServicer(region_pb2_grpc.RegionServiceServicer):
    def __init__(
        self, *, region_name: str, control: ControlPort | None, organizations: OrganizationService
    ) -> None:
        self._region_name = region_name
        self._control = control
        self._organizations = organizations

    @translate_errors(ERRORS)
    def Ping(self, request: common_pb2.PingRequest, context: grpc.ServicerContext) -> common_pb2.PingResponse:
        path = ping.ping(
            hops_from_proto(request.path),
            request.bounces,
            region_name=self._region_name,
            control=self._control,
        )
        return common_pb2.PingResponse(path=hops_to_proto(path))

    @translate_errors(ERRORS)
    def UpdateOrganizationSlugsFromReservations(
        self,
        request: region_pb2.UpdateOrganizationSlugsFromReservationsRequest,
        context: grpc.ServicerContext,
    ) -> region_pb2.UpdateOrganizationSlugsFromReservationsResponse:
        results = self._organizations.update_slugs_from_reservations(
            [(u.organization_id, u.slug) for u in request.updates]
        )
        return region_pb2.UpdateOrganizationSlugsFromReservationsResponse(
            results=[
                region_pb2.SlugUpdateResult(
                    organization_id=r.organization_id, slug=r.slug, taken=r.taken, message=r.message
                )
                for r in results
            ]
        )

    @translate_errors(ERRORS)
    def UpsertSlugReservationReplicas(
        self, request: region_pb2.UpsertSlugReservationReplicasRequest, context: grpc.ServicerContext
    ) -> region_pb2.UpsertSlugReservationReplicasResponse:
        self._organizations.upsert_replicas(
            [
                ReplicaUpdate(
                    reservation_id=r.id,
                    slug=r.slug,
                    organization_id=r.organization_id,
                    region_name=r.region_name,
                    reservation_type=r.reservation_type,
                )
                for r in request.reservations
            ]
        )
        return region_pb2.UpsertSlugReservationReplicasResponse()

    @translate_errors(ERRORS)
    def DeleteSlugReservationReplicas(
        self, request: region_pb2.DeleteSlugReservationReplicasRequest, context: grpc.ServicerContext
    ) -> region_pb2.DeleteSlugReservationReplicasResponse:
        self._organizations.delete_replicas(list(request.reservation_ids))
        return region_pb2.DeleteSlugReservationReplicasResponse()

    @translate_errors(ERRORS)
    def DrainOutbox(
        self, request: common_pb2.DrainOutboxRequest, context: grpc.ServicerContext
    ) -> common_pb2.DrainOutboxResponse:
        return common_pb2.DrainOutboxResponse(processed=self._organizations.drain_due())

    def register(self, server: grpc.Server) -> None:
        region_pb2_grpc.add_RegionServiceServicer_to_server(self, server)
