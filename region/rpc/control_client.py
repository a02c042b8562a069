"""The region's client for the control silo (implements ``region.ports.ControlPort``)."""

from __future__ import annotations

from shared.config import RpcSettings
from shared.ping import Hop, hops_from_proto, hops_to_proto
from shared.relocation.batch import Batch, BatchResult
from shared.rpc.client import PeerClient
from shared.rpc.relocation import batch_to_proto, result_from_proto
from shared.rpc.v1 import common_pb2, control_pb2

SERVICE = control_pb2.DESCRIPTOR.services_by_name["ControlService"]


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

    def upsert_mapping(
        self, organization_id: int, region_name: str, slug: str, name: str, status: int
    ) -> None:
        self._peer.call(
            "UpsertOrganizationMapping",
            control_pb2.UpsertOrganizationMappingRequest(
                organization_id=organization_id, region_name=region_name, slug=slug, name=name, status=status
            ),
            control_pb2.UpsertOrganizationMappingResponse,
        )

    def upsert_member_mapping(
        self,
        *,
        region_name: str,
        organization_id: int,
        member_id: int,
        user_id: int | None,
        email: str | None,
        role: str,
        invite_status: int,
    ) -> None:
        self._peer.call(
            "UpsertOrganizationMemberMapping",
            control_pb2.UpsertOrganizationMemberMappingRequest(
                region_name=region_name,
                organization_id=organization_id,
                organizationmember_id=member_id,
                user_id=user_id or 0,
                email=email or "",
                role=role,
                invite_status=invite_status,
            ),
            control_pb2.UpsertOrganizationMemberMappingResponse,
        )

    def upsert_member_team(
        self,
        *,
        region_name: str,
        organization_id: int,
        member_team_id: int,
        member_id: int,
        team_id: int,
        is_active: bool,
    ) -> None:
        self._peer.call(
            "UpsertOrganizationMemberTeamReplica",
            control_pb2.UpsertOrganizationMemberTeamReplicaRequest(
                region_name=region_name,
                organization_id=organization_id,
                organizationmemberteam_id=member_team_id,
                organizationmember_id=member_id,
                team_id=team_id,
                is_active=is_active,
            ),
            control_pb2.UpsertOrganizationMemberTeamReplicaResponse,
        )

    def reserve_slugs(
        self, import_id: str, region_name: str, wanted: dict[int, str], *, timeout_s: float
    ) -> dict[int, str]:
        """Control's bulk slug reservation; the same import id always gets the same answer."""
        answer = self._peer.call(
            "BulkReserveOrganizationSlugs",
            control_pb2.BulkReserveOrganizationSlugsRequest(
                import_id=import_id, region_name=region_name, slugs_by_organization_id=wanted
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

    def __init__(self, client: GrpcControlClient, *, timeout_s: float = 120.0) -> None:
        self._client = client
        self._timeout = timeout_s

    def write(self, batch: Batch) -> BatchResult:
        return self._client.import_batch(batch, timeout_s=self._timeout)
