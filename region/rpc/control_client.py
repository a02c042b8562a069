"""The region's client for the control silo (implements ``region.ports.ControlPort``)."""

from __future__ import annotations

from shared.config import RpcSettings
from shared.ping import Hop, hops_from_proto, hops_to_proto
from shared.rpc.client import PeerClient
from shared.rpc.v1 import common_pb2, control_pb2

SERVICE = control_pb2.DESCRIPTOR.services_by_name["ControlService"]


class GrpcControlClient:
    def __init__(self, address: str, *, settings: RpcSettings) -> None:
        self._peer = PeerClient(address, SERVICE, settings=settings, peer="control")

    def close(self) -> None:
        self._peer.close()

    def ping(self, path: list[Hop], bounces: int, *, origin_region: str) -> list[Hop]:
        request = common_pb2.PingRequest(
            path=hops_to_proto(path), bounces=bounces, origin_region=origin_region
        )
        return hops_from_proto(self._peer.call("Ping", request, common_pb2.PingResponse).path)
