"""A signed, deadline-bound, retrying client for the other silo's service."""

from __future__ import annotations

import logging
import time
from typing import TypeVar

import grpc
import tenacity
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from shared.config import RpcSettings, TlsFiles
from shared.rpc.auth import Signer
from shared.rpc.deadline import remaining
from shared.rpc.errors import RemoteDeadlineExceeded, RemoteUnavailable, remote_error
from shared.rpc.server import MAX_MESSAGE_BYTES

_LOGGER = logging.getLogger(__name__)
_RETRY_SAFE = {descriptor_pb2.MethodOptions.IDEMPOTENT, descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS}

R = TypeVar("R", bound=Message)


def open_channel(address: str, tls: TlsFiles) -> grpc.Channel:
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        # Reconnect quickly once a restarted peer is back, instead of gRPC's default of up to 120 s.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        # Our retries re-sign every attempt; gRPC's own retry would resend a used signature.
        ("grpc.enable_retries", 0),
    ]
    if not tls.client_enabled:
        return grpc.insecure_channel(address, options=options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca.read_bytes() if tls.ca else None,
        private_key=tls.key.read_bytes() if tls.key else None,
        certificate_chain=tls.cert.read_bytes() if tls.cert else None,
    )
    return grpc.secure_channel(address, credentials, options=options)


class PeerClient:
    """Calls one service at one address.

    Every call has a deadline: the ``timeout`` given, else the settings' default, and never later than
    the deadline of the inbound call being served (so nested callbacks share the outer budget). Calls to
    methods the contract declares idempotent are retried with exponential backoff on UNAVAILABLE while
    the deadline allows; other failures raise the typed :class:`RemoteError` at once.
    """

    def __init__(self, address: str, service: ServiceDescriptor, *, settings: RpcSettings, peer: str) -> None:
        self.address = address
        self.peer = peer
        self._service = service
        self._settings = settings
        self._signer = Signer(settings.secrets)
        self._channel = open_channel(address, settings.tls)

    def close(self) -> None:
        self._channel.close()

    def call(
        self, method: str, request: Message, response_type: type[R], *, timeout: float | None = None
    ) -> R:
        descriptor = self._service.methods_by_name[method]
        path = f"/{self._service.full_name}/{method}"
        retry_safe = descriptor.GetOptions().idempotency_level in _RETRY_SAFE
        budget = remaining(timeout if timeout is not None else self._settings.default_timeout_s)
        deadline = time.monotonic() + budget
        body = request.SerializeToString()
        stub: grpc.UnaryUnaryMultiCallable[bytes, R] = self._channel.unary_unary(
            path, request_serializer=None, response_deserializer=response_type.FromString
        )
        attempts = 0

        def attempt() -> R:
            nonlocal attempts
            attempts += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise RemoteDeadlineExceeded(
                    path, f"{self.peer} at {self.address}: no time left for the call"
                )
            try:
                result: R = stub(body, timeout=left, metadata=self._signer.metadata(path, body))
            except grpc.RpcError as exc:
                raise remote_error(path, exc) from exc
            return result

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(RemoteUnavailable) if retry_safe else tenacity.retry_never,
            stop=tenacity.stop_after_attempt(self._settings.max_attempts) | _StopAt(deadline),
            wait=tenacity.wait_exponential(
                multiplier=self._settings.initial_backoff_s, max=self._settings.max_backoff_s
            )
            + tenacity.wait_random(0, self._settings.initial_backoff_s),
            before_sleep=lambda state: _LOGGER.info(
                "%s unavailable at %s (attempt %d), retrying", self.peer, self.address, state.attempt_number
            ),
            sleep=lambda seconds: time.sleep(max(0.0, min(seconds, deadline - time.monotonic()))),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except RemoteUnavailable as exc:
            raise RemoteUnavailable(
                path,
                f"{self.peer} at {self.address} is unavailable after {attempts} attempt(s) "
                f"within {budget:.1f} s: {exc.message}",
                exc.detail,
            ) from exc


class _StopAt(tenacity.stop.stop_base):
    """Stop retrying once the next attempt could not start before the deadline."""

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return time.monotonic() >= self._deadline - 0.05
