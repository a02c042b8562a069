"""Building and running a silo's gRPC server: authentication, deadlines, health, graceful stop."""

from __future__ import annotations

import logging
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from shared.config import RpcSettings, TlsFiles
from shared.rpc.auth import Verifier
from shared.rpc.deadline import inbound_deadline

_LOGGER = logging.getLogger(__name__)
HEALTH_PREFIX = "/grpc.health.v1.Health/"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

Registrar = Callable[[grpc.Server], None]


class CallCounts:
    """Calls served per method (logged when the server stops; the benchmark reads them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, method: str) -> None:
        with self._lock:
            self._counts[method] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class SignatureInterceptor(grpc.ServerInterceptor):
    """Verifies every call's signature over its raw request bytes (health probes stay open), and makes
    the call's deadline the ceiling of any nested outbound call."""

    def __init__(self, verifier: Verifier, calls: CallCounts | None = None) -> None:
        self._verifier = verifier
        self._calls = calls if calls is not None else CallCounts()

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: grpc.HandlerCallDetails
    ) -> Any:
        method: str = handler_call_details.method
        handler = continuation(handler_call_details)
        if handler is None or method.startswith(HEALTH_PREFIX):
            return handler
        if handler.unary_unary is None:
            return _refuse(grpc.StatusCode.UNIMPLEMENTED, "only unary calls are served")
        metadata = tuple(handler_call_details.invocation_metadata or ())
        deserialize = handler.request_deserializer
        behaviour = handler.unary_unary
        verifier = self._verifier
        calls = self._calls
        name = method.rpartition("/")[2]

        def checked(raw: bytes, context: grpc.ServicerContext) -> Any:
            refusal = verifier.check(method, metadata, raw)
            if refusal is not None:
                _LOGGER.warning("refused %s: %s (peer %s)", method, refusal, context.peer())
                context.abort(grpc.StatusCode.UNAUTHENTICATED, refusal)
            calls.add(name)
            request = deserialize(raw) if deserialize is not None else raw
            with inbound_deadline(context.time_remaining()):
                return behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(
            checked, request_deserializer=None, response_serializer=handler.response_serializer
        )


def _refuse(code: grpc.StatusCode, message: str) -> Any:
    def refuse(_request: bytes, context: grpc.ServicerContext) -> None:
        context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(refuse)


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    assert tls.cert is not None and tls.key is not None
    return grpc.ssl_server_credentials(
        [(tls.key.read_bytes(), tls.cert.read_bytes())],
        root_certificates=tls.ca.read_bytes() if tls.ca else None,
        require_client_auth=tls.ca is not None,
    )


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    calls: CallCounts = field(default_factory=CallCounts)

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self.health.set("", status)


def create_server(listen: str, registrars: Iterable[Registrar], *, settings: RpcSettings) -> RunningServer:
    """Bind ``listen`` (port 0 picks a free one) and start serving; health stays NOT_SERVING until
    :meth:`RunningServer.set_serving`. Returns the server and the port it bound."""
    verifier = Verifier(settings.secrets, window_s=settings.replay_window_s)
    calls = CallCounts()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.server_threads, thread_name_prefix="rpc"),
        interceptors=[SignatureInterceptor(verifier, calls)],
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for register in registrars:
        register(server)
    if settings.tls.server_enabled:
        port = server.add_secure_port(listen, server_credentials(settings.tls))
    else:
        port = server.add_insecure_port(listen)
    running = RunningServer(server, port, health_servicer, calls)
    running.set_serving(False)
    server.start()
    return running


def wait_for_stop_signal() -> None:
    """Block until SIGTERM or SIGINT (main thread only)."""
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        _LOGGER.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    stop.wait()


def shut_down(running: RunningServer, grace_s: float) -> None:
    """Health NOT_SERVING, refuse new calls, give in-flight calls ``grace_s`` to finish."""
    running.health.enter_graceful_shutdown()
    running.server.stop(grace_s).wait()
