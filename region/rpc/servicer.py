"""RegionService: protobuf in, domain call, protobuf out. No business logic here."""

from __future__ import annotations

import grpc

from region import ping
from region.errors import ControlNotConfigured, RegionError
from region.ports import ControlPort
from shared.ping import hops_from_proto, hops_to_proto
from shared.rpc.errors import ErrorTable, translate_errors, unimplemented
from shared.rpc.v1 import common_pb2, region_pb2, region_pb2_grpc

#: The one table from the region's domain errors to status codes.
ERRORS: ErrorTable = {
    ControlNotConfigured: grpc.StatusCode.FAILED_PRECONDITION,
    RegionError: grpc.StatusCode.FAILED_PRECONDITION,
}


class RegionServicer(region_pb2_grpc.RegionServiceServicer):
    def __init__(self, *, region_name: str, control: ControlPort | None) -> None:
        self._region_name = region_name
        self._control = control

    @translate_errors(ERRORS)
    def Ping(self, request: common_pb2.PingRequest, context: grpc.ServicerContext) -> common_pb2.PingResponse:
        path = ping.ping(
            hops_from_proto(request.path),
            request.bounces,
            region_name=self._region_name,
            control=self._control,
        )
        return common_pb2.PingResponse(path=hops_to_proto(path))

    def UpdateOrganizationSlugFromReservation(
        self, request: region_pb2.UpdateOrganizationSlugFromReservationRequest, context: grpc.ServicerContext
    ) -> region_pb2.UpdateOrganizationSlugFromReservationResponse:
        unimplemented(context, "UpdateOrganizationSlugFromReservation")

    def DrainOutbox(
        self, request: common_pb2.DrainOutboxRequest, context: grpc.ServicerContext
    ) -> common_pb2.DrainOutboxResponse:
        unimplemented(context, "DrainOutbox")

    def register(self, server: grpc.Server) -> None:
        region_pb2_grpc.add_RegionServiceServicer_to_server(self, server)
