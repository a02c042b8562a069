"""Start silos as real processes on loopback and talk to them: the embedded default (``siloport up``),
the import command's local control silo, and the end-to-end tests all use this."""

from __future__ import annotations

import argparse
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.config import RpcSettings, data_dir, resolve_secrets
from shared.errors import SharedError
from shared.ping import hops_from_proto
from shared.rpc.client import PeerClient
from shared.rpc.v1 import common_pb2, region_pb2
from shared.service import ANNOUNCEMENT

LOCAL_REGION = "local"


class LaunchError(SharedError):
    """A silo process did not start or did not become healthy."""


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A port free right now on 127.0.0.1 (for a peer address that must be known before start).

    It is taken from below the kernel's ephemeral range, so that no process binding port 0 (a silo
    started with ``--listen 127.0.0.1:0``, an outbound connection) can be given it before its owner
    starts; a port handed out by binding port 0 could be handed out again at once."""
    low, _high = _ephemeral_range()
    candidates = list(range(max(1024, low - 12000), low))
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


@dataclass
class SiloProcess:
    """A silo server running as a subprocess (``python -m control|region serve ...``)."""

    silo: str
    process: subprocess.Popen[str]
    address: str
    log_path: Path | None = None
    pump: threading.Thread | None = None

    @classmethod
    def start(
        cls,
        silo: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        timeout_s: float = 60.0,
    ) -> SiloProcess:
        """Start ``silo serve ARGS`` and wait for its announcement line (not yet for health)."""
        stderr: IO[str] | int = subprocess.DEVNULL
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            stderr = log_path.open("a")
        process = subprocess.Popen(
            [sys.executable, "-m", silo, "serve", *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        if not isinstance(stderr, int):
            stderr.close()
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=pump, name=f"{silo}-stdout", daemon=True)
        reader.start()
        try:
            first = lines.get(timeout=timeout_s)
        except queue.Empty:
            process.kill()
            process.wait()
            reader.join(timeout=5)
            assert process.stdout is not None
            process.stdout.close()
            raise LaunchError(f"{silo} did not announce its address within {timeout_s:.0f} s") from None
        if first is None or ANNOUNCEMENT not in first:
            process.wait(timeout=10)
            reader.join(timeout=5)
            assert process.stdout is not None
            process.stdout.close()
            hint = f"; see {log_path}" if log_path else ""
            raise LaunchError(f"{silo} exited with code {process.returncode} before serving{hint}")
        address = first.rsplit(" ", 1)[-1].strip()
        return cls(silo, process, address, log_path, reader)

    def wait_healthy(self, timeout_s: float = 60.0, channel: grpc.Channel | None = None) -> None:
        own = channel is None
        channel = channel or grpc.insecure_channel(self.address)
        try:
            deadline = time.monotonic() + timeout_s
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if self.process.poll() is not None:
                    hint = f"; see {self.log_path}" if self.log_path else ""
                    raise LaunchError(f"{self.silo} exited with code {self.process.returncode}{hint}")
                try:
                    answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise LaunchError(f"{self.silo} at {self.address} not SERVING after {timeout_s:.0f} s")
                time.sleep(0.1)
        finally:
            if own:
                channel.close()

    def stop(self, grace_s: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after ``grace_s``; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.pump is not None:
            self.pump.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


def health_status(address: str, timeout_s: float = 5.0) -> str:
    with grpc.insecure_channel(address) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout_s
            )
        except grpc.RpcError as exc:
            return f"unreachable ({exc.code().name})"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))


@dataclass
class LocalSilos:
    """A control silo and one region on the embedded default, for this machine only."""

    control: SiloProcess
    region: SiloProcess

    @classmethod
    def start(cls, directory: Path, *, region_name: str = LOCAL_REGION) -> LocalSilos:
        env = {"SILOPORT_DATA_DIR": str(directory)}
        resolve_secrets(None, env)  # create the shared secret file before either silo reads it
        region_port = free_port()
        logs = directory / "logs"
        control = SiloProcess.start(
            "control",
            ["--listen", "127.0.0.1:0", "--region-addresses", f"{region_name}=127.0.0.1:{region_port}"],
            env=env,
            log_path=logs / "control.log",
        )
        try:
            region = SiloProcess.start(
                "region",
                [
                    "--listen",
                    f"127.0.0.1:{region_port}",
                    "--name",
                    region_name,
                    "--control-address",
                    control.address,
                ],
                env=env,
                log_path=logs / f"region-{region_name}.log",
            )
        except BaseException:
            control.stop()
            raise
        silos = cls(control, region)
        try:
            control.wait_healthy()
            region.wait_healthy()
        except BaseException:
            silos.stop()
            raise
        return silos

    def stop(self) -> None:
        self.region.stop()
        self.control.stop()


def ping_round_trip(region_address: str, rpc: RpcSettings, *, timeout_s: float = 10.0) -> str:
    """Ask a region to Ping control, which calls the region back; the hops crossed, as text."""
    client = PeerClient(
        region_address, region_pb2.DESCRIPTOR.services_by_name["RegionService"], settings=rpc, peer="region"
    )
    try:
        answer = client.call(
            "Ping", common_pb2.PingRequest(bounces=2), common_pb2.PingResponse, timeout=timeout_s
        )
    finally:
        client.close()
    return " -> ".join(str(hop) for hop in hops_from_proto(answer.path))


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _up(args: argparse.Namespace) -> int:
    directory = Path(args.data_dir) if args.data_dir else data_dir()
    print(f"starting a control silo and region {LOCAL_REGION!r} on SQLite under {directory} ...", flush=True)
    silos = LocalSilos.start(directory)
    try:
        rpc = RpcSettings(secrets=resolve_secrets(None, {"SILOPORT_DATA_DIR": str(directory)}))
        print(f"control  {silos.control.address:<22} {health_status(silos.control.address)}")
        region_health = health_status(silos.region.address)
        print(f"region   {silos.region.address:<22} {region_health}  (name {LOCAL_REGION})")
        print(f"ping     {ping_round_trip(silos.region.address, rpc)}", flush=True)
        if not args.once:
            print("both silos are serving; press Ctrl-C to stop", flush=True)
            signal.signal(signal.SIGTERM, _interrupt)
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        silos.stop()
    print("stopped")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "up",
        help="start a control silo and a region locally (SQLite) and show their health",
        description="Start a control silo and one region on the embedded default (SQLite files under "
        "$SILOPORT_DATA_DIR or ./.siloport), wait until both are SERVING, print their health and a "
        "region -> control -> region Ping, then keep serving until Ctrl-C (or stop at once with --once).",
    )
    parser.add_argument("--once", action="store_true", help="stop both silos after printing their health")
    parser.add_argument("--data-dir", help="directory for the databases, secret and logs")
    parser.set_defaults(func=_up)
