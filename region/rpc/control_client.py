"""The region's client for the control silo (implements ``region.ports.ControlPort``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.config import RpcSettings
from shared.ping import Hop, hops_from_proto, hops_to_proto
from shared.relocation.batch import Batch, BatchResult
from shared.rpc.client import PeerClient
from shared.rpc.relocation import batch_to_proto, result_from_proto
from shared.rpc.v1 import common_pb2, control_pb2

SERVICE = control_pb2.DESCRIPTOR.services_by_name["ControlService"]


@dataclass(frozen=True)
class OrganizationMappingUpdate:
    organization_id: int
    slug: str
    name: str
    status: int


@dataclass(frozen=True)
class MemberMapping:
    organization_id: int
    member_id: int
    user_id: int | None
    email: str | None
    role: str
    invite_status: int


@dataclass(frozen=True)
class MemberTeamReplica:
    organization_id: int
    member_team_id: int
    member_id: int
    team_id: int
    is_active: bool


class GrpcControlClient:
    def __init__(self, address: str, *, settings: RpcSettings) -> None:
        self._peer = PeerClient(address, SERVICE, settings=settings, peer="control")

    def close(self) -> None:
        self._peer.close()

    def import_batch(self, batch: Batch, *, timeout_s: float) -> BatchResult:
        answer = self._peer.call(
            "ImportModelBatch", batch_to_proto(batch), control_pb2.ImportModelBatchResponse, timeout=timeout_s
        )
        return result_from_proto(answer)

    def upsert_mappings(self, region_name: str, mappings: Sequence[OrganizationMappingUpdate]) -> list[int]:
        """Control's mappings of these organizations; returns the organizations whose slug no
        reservation backs yet (their mapping is written with the reservation)."""
        answer = self._peer.call(
            "UpsertOrganizationMappings",
            control_pb2.UpsertOrganizationMappingsRequest(
                mappings=[
                    control_pb2.OrganizationMapping(
                        organization_id=m.organization_id,
                        region_name=region_name,
                        slug=m.slug,
                        name=m.name,
                        status=m.status,
                    )
                    for m in mappings
                ]
            ),
            control_pb2.UpsertOrganizationMappingsResponse,
        )
        return list(answer.rejected_organization_ids)

    def upsert_member_mappings(self, region_name: str, members: Sequence[MemberMapping]) -> None:
        """Control's mappings of these members, applied in order in one transaction."""
        self._peer.call(
            "UpsertOrganizationMemberMappings",
            control_pb2.UpsertOrganizationMemberMappingsRequest(
                members=[
                    control_pb2.OrganizationMemberMapping(
                        region_name=region_name,
                        organization_id=m.organization_id,
                        organizationmember_id=m.member_id,
                        user_id=m.user_id or 0,
                        email=m.email or "",
                        role=m.role,
                        invite_status=m.invite_status,
                    )
                    for m in members
                ]
            ),
            control_pb2.UpsertOrganizationMemberMappingsResponse,
        )

    def upsert_member_team_replicas(
        self, region_name: str, member_teams: Sequence[MemberTeamReplica]
    ) -> None:
        """Control's replicas of these team memberships, applied in order in one transaction."""
        self._peer.call(
            "UpsertOrganizationMemberTeamReplicas",
            control_pb2.UpsertOrganizationMemberTeamReplicasRequest(
                member_teams=[
                    control_pb2.OrganizationMemberTeamReplica(
                        region_name=region_name,
                        organization_id=t.organization_id,
                        organizationmemberteam_id=t.member_team_id,
                        organizationmember_id=t.member_id,
                        team_id=t.team_id,
                        is_active=t.is_active,
                    )
                    for t in member_teams
                ]
            ),
            control_pb2.UpsertOrganizationMemberTeamReplicasResponse,
        )

    def reserve_slugs(
        self,
        import_id: str,
        region_name: str,
        wanted: dict[int, str],
        *,
        timeout_s: float,
        held_in_region: bool = False,
    ) -> dict[int, str]:
        """Control's bulk slug reservation; the same import id always gets the same answer. With
        ``held_in_region`` the organizations hold the slugs they ask for here already: those that keep
        them are not renamed, and their mappings are this region's to send."""
        answer = self._peer.call(
            "BulkReserveOrganizationSlugs",
            control_pb2.BulkReserveOrganizationSlugsRequest(
                import_id=import_id,
                region_name=region_name,
                slugs_by_organization_id=wanted,
                slugs_held_in_region=held_in_region,
            ),
            control_pb2.BulkReserveOrganizationSlugsResponse,
            timeout=timeout_s,
        )
        return dict(answer.final_slugs)

    def ping(self, path: list[Hop], bounces: int, *, origin_region: str) -> list[Hop]:
        request = common_pb2.PingRequest(
            path=hops_to_proto(path), bounces=bounces, origin_region=origin_region
        )
        return hops_from_proto(self._peer.call("Ping", request, common_pb2.PingResponse).path)


class ControlBatchWriter:
    """Writes batches of control models through control (implements ``region.importer.ports.Writer``)."""

    #: Control takes concurrent calls (its database serialises what must be).
    overlaps = True

    def __init__(self, client: GrpcControlClient, *, timeout_s: float = 120.0) -> None:
        self._client = client
        self._timeout = timeout_s

    def write(self, batch: Batch) -> BatchResult:
        return self._client.import_batch(batch, timeout_s=self._timeout)

    def settle(self, timeout_s: float | None = None) -> None:
        """Nothing to wait for: control delivers its own outbox."""
