"""Control's clients for the regions, routed by region name (implements ``control.ports.RegionPort``)."""

from __future__ import annotations

import threading

from control.db.models import OrganizationSlugReservation
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

    def upsert_replica(self, region_name: str, reservation: OrganizationSlugReservation) -> None:
        self.peer(region_name).call(
            "UpsertSlugReservationReplica",
            _reservation_to_proto(reservation),
            region_pb2.UpsertSlugReservationReplicaResponse,
        )

    def delete_replica(self, region_name: str, reservation_id: int) -> None:
        self.peer(region_name).call(
            "DeleteSlugReservationReplica",
            region_pb2.DeleteSlugReservationReplicaRequest(reservation_id=reservation_id),
            region_pb2.DeleteSlugReservationReplicaResponse,
        )

    def update_slug(self, region_name: str, alias: OrganizationSlugReservation) -> str:
        """Ask the region to give the organization the alias's slug; RemoteAlreadyExists if it cannot."""
        answer = self.peer(region_name).call(
            "UpdateOrganizationSlugFromReservation",
            region_pb2.UpdateOrganizationSlugFromReservationRequest(
                organization_id=alias.organization_id,
                slug=alias.slug,
                reservation_id=alias.id,
                import_id=alias.import_id or "",
            ),
            region_pb2.UpdateOrganizationSlugFromReservationResponse,
        )
        return answer.slug


def _reservation_to_proto(reservation: OrganizationSlugReservation) -> region_pb2.SlugReservation:
    return region_pb2.SlugReservation(
        id=reservation.id,
        slug=reservation.slug,
        organization_id=reservation.organization_id,
        region_name=reservation.region_name,
        reservation_type=reservation.reservation_type,
    )
