"""Control's clients for the regions, routed by region name (implements ``control.ports.RegionPort``)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

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

    def upsert_replicas(self, region_name: str, reservations: Sequence[OrganizationSlugReservation]) -> None:
        self.peer(region_name).call(
            "UpsertSlugReservationReplicas",
            region_pb2.UpsertSlugReservationReplicasRequest(
                reservations=[_reservation_to_proto(r) for r in reservations]
            ),
            region_pb2.UpsertSlugReservationReplicasResponse,
        )

    def delete_replicas(self, region_name: str, reservation_ids: Sequence[int]) -> None:
        self.peer(region_name).call(
            "DeleteSlugReservationReplicas",
            region_pb2.DeleteSlugReservationReplicasRequest(reservation_ids=list(reservation_ids)),
            region_pb2.DeleteSlugReservationReplicasResponse,
        )

    def update_slugs(
        self, region_name: str, aliases: Sequence[OrganizationSlugReservation]
    ) -> dict[int, str | None]:
        """Ask the region to give each organization its alias's slug. Returns, per organization, None
        when it took the slug, or why it could not (another organization there holds it)."""
        answer = self.peer(region_name).call(
            "UpdateOrganizationSlugsFromReservations",
            region_pb2.UpdateOrganizationSlugsFromReservationsRequest(
                updates=[
                    region_pb2.SlugFromReservation(
                        organization_id=alias.organization_id,
                        slug=alias.slug,
                        reservation_id=alias.id,
                        import_id=alias.import_id or "",
                    )
                    for alias in aliases
                ]
            ),
            region_pb2.UpdateOrganizationSlugsFromReservationsResponse,
        )
        return {r.organization_id: (r.message or "taken") if r.taken else None for r in answer.results}


def _reservation_to_proto(reservation: OrganizationSlugReservation) -> region_pb2.SlugReservation:
    return region_pb2.SlugReservation(
        id=reservation.id,
        slug=reservation.slug,
        organization_id=reservation.organization_id,
        region_name=reservation.region_name,
        reservation_type=reservation.reservation_type,
    )
