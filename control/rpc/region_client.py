"""Control's clients for the regions, routed by region name (implements ``control.ports.RegionPort``)."""

from __future__ import annotations

import threading

from control.errors import UnknownRegion
from shared.config import RpcSettings
from shared.ping import Hop, hops_from_proto, hops_to_proto
from shared.rpc.client import PeerClient
from shared.rpc.v1 import common_pb2, region_pb2

SERVICE = region_pb2.DESCRIPTOR.services_by_name["RegionService"]


class GrpcRegionClients:
    def __init__(self, addresses: dict[str, str], *, settings: RpcSettings) -> None:
        self._addresses = dict(addresses)
        self._settings = settings
        self._peers: dict[str, PeerClient] = {}
        self._lock = threading.Lock()

    def peer(self, region_name: str) -> PeerClient:
        with self._lock:
            if region_name not in self._peers:
                address = self._addresses.get(region_name)
                if address is None:
                    raise UnknownRegion(region_name, list(self._addresses))
                self._peers[region_name] = PeerClient(
                    address, SERVICE, settings=self._settings, peer=f"region {region_name!r}"
                )
            return self._peers[region_name]

    def close(self) -> None:
        with self._lock:
            for peer in self._peers.values():
                peer.close()
            self._peers.clear()

    def ping(self, region_name: str, path: list[Hop], bounces: int) -> list[Hop]:
        request = common_pb2.PingRequest(path=hops_to_proto(path), bounces=bounces, origin_region=region_name)
        answer = self.peer(region_name).call("Ping", request, common_pb2.PingResponse)
        return hops_from_proto(answer.path)
