"""The hops of a Ping round trip, shared by both silos' probe handlers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.rpc.v1 import common_pb2


@dataclass(frozen=True)
class Hop:
    silo: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.silo}:{self.name}" if self.name else self.silo


def hops_from_proto(hops: Iterable[common_pb2.Hop]) -> list[Hop]:
    return [Hop(h.silo, h.name) for h in hops]


def hops_to_proto(hops: Iterable[Hop]) -> list[common_pb2.Hop]:
    return [common_pb2.Hop(silo=h.silo, name=h.name) for h in hops]
