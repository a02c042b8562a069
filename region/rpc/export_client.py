"""The region's client for control's ExportModel (implements ``region.exporter.ports.RowSource``)."""

from __future__ import annotations

from collections.abc import Sequence

from region.exporter.errors import ControlUnreachable, SourceRefused
from shared.config import RpcSettings
from shared.relocation.pages import FieldFilter, Page, position
from shared.relocation.spec import ModelSpec
from shared.rpc.client import PeerClient
from shared.rpc.errors import RemoteDeadlineExceeded, RemoteError, RemoteUnavailable
from shared.rpc.export import page_from_proto, request_to_proto
from shared.rpc.v1 import control_pb2, export_pb2

SERVICE = control_pb2.DESCRIPTOR.services_by_name["ControlService"]


class ControlRows:
    """Pages of the control silo's models, one call each (read-only, so retried when unavailable)."""

    def __init__(self, address: str, *, settings: RpcSettings, timeout_s: float = 60.0) -> None:
        self._peer = PeerClient(address, SERVICE, settings=settings, peer="control")
        self._timeout = timeout_s

    def close(self) -> None:
        self._peer.close()

    def page(self, spec: ModelSpec, *, after_pk: int, limit: int, filters: Sequence[FieldFilter]) -> Page:
        request = request_to_proto(spec.name, after_pk, limit, filters)
        try:
            answer = self._peer.call(
                "ExportModel", request, export_pb2.ExportModelResponse, timeout=self._timeout
            )
        except (RemoteUnavailable, RemoteDeadlineExceeded) as exc:
            raise ControlUnreachable(
                f"control did not answer while exporting {spec.name} {position(after_pk)}: {exc.message}"
            ) from exc
        except RemoteError as exc:
            raise SourceRefused(
                f"control refused to export {spec.name} {position(after_pk)}: {exc.message}"
            ) from exc
        return page_from_proto(answer)
