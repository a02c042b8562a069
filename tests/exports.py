"""The benchmark's export generator, used by tests for exports of any size."""

from bench.generate import DATE, generate, write_export

__all__ = ["DATE", "generate", "write_export"]
