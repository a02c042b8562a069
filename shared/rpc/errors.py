"""The error contract of the wire, both directions.

Server side: each silo declares one table from its domain errors to status codes and decorates its
servicer methods with :func:`translate_errors`; the error's ``reason``, ``model`` and ``pk`` attributes,
when present, travel as an :class:`ErrorDetail` in the trailing metadata.

Client side: :func:`remote_error` turns a ``grpc.RpcError`` into a typed :class:`RemoteError` (one class
per status code) that carries the remote message and detail, so callers never parse strings.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

import grpc

from shared.errors import SharedError
from shared.rpc.v1 import common_pb2

_LOGGER = logging.getLogger(__name__)
DETAIL_KEY = "siloport-error-detail-bin"

ErrorTable = Mapping[type[Exception], grpc.StatusCode]


class RemoteError(SharedError):
    """A call to the other silo failed; ``code`` is the gRPC status, ``detail`` the remote detail."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, method: str, message: str, detail: common_pb2.ErrorDetail | None = None) -> None:
        self.method = method
        self.message = message
        self.detail = detail if detail is not None else common_pb2.ErrorDetail()
        super().__init__(f"{method}: {self.code.name}: {message}")

    @property
    def reason(self) -> str:
        return self.detail.reason


class RemoteInvalidArgument(RemoteError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class RemoteNotFound(RemoteError):
    code = grpc.StatusCode.NOT_FOUND


class RemoteAlreadyExists(RemoteError):
    code = grpc.StatusCode.ALREADY_EXISTS


class RemoteFailedPrecondition(RemoteError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class RemoteAborted(RemoteError):
    code = grpc.StatusCode.ABORTED


class RemoteUnauthenticated(RemoteError):
    code = grpc.StatusCode.UNAUTHENTICATED


class RemotePermissionDenied(RemoteError):
    code = grpc.StatusCode.PERMISSION_DENIED


class RemoteUnavailable(RemoteError):
    code = grpc.StatusCode.UNAVAILABLE


class RemoteDeadlineExceeded(RemoteError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class RemoteUnimplemented(RemoteError):
    code = grpc.StatusCode.UNIMPLEMENTED


class RemoteResourceExhausted(RemoteError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class RemoteInternal(RemoteError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[RemoteError]] = {
    cls.code: cls
    for cls in (
        RemoteInvalidArgument,
        RemoteNotFound,
        RemoteAlreadyExists,
        RemoteFailedPrecondition,
        RemoteAborted,
        RemoteUnauthenticated,
        RemotePermissionDenied,
        RemoteUnavailable,
        RemoteDeadlineExceeded,
        RemoteUnimplemented,
        RemoteResourceExhausted,
        RemoteInternal,
    )
}


def remote_error(method: str, error: grpc.RpcError) -> RemoteError:
    """The typed error for a failed call (``error`` is also a ``grpc.Call``)."""
    call: Any = error
    code: grpc.StatusCode = call.code()
    detail = common_pb2.ErrorDetail()
    for key, value in call.trailing_metadata() or ():
        if key == DETAIL_KEY and isinstance(value, bytes):
            detail.ParseFromString(value)
    cls = _BY_CODE.get(code, RemoteError)
    result = cls(method, call.details() or code.name, detail)
    if cls is RemoteError:
        result.code = code
    return result


def error_detail(exc: BaseException) -> common_pb2.ErrorDetail:
    if isinstance(exc, RemoteError):
        return exc.detail
    detail = common_pb2.ErrorDetail(
        reason=str(getattr(exc, "reason", "") or type(exc).__name__),
        message=str(exc),
        model=str(getattr(exc, "model", "") or ""),
        pk=str(getattr(exc, "pk", "") or ""),
    )
    for key, value in (getattr(exc, "fields", None) or {}).items():
        detail.fields[str(key)] = str(value)
    return detail


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, exc: BaseException) -> NoReturn:
    context.set_trailing_metadata(((DETAIL_KEY, error_detail(exc).SerializeToString()),))
    message = exc.message if isinstance(exc, RemoteError) else str(exc)
    context.abort(code, message)
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


def status_for(exc: BaseException, table: ErrorTable) -> grpc.StatusCode | None:
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return None


S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[S, Req, grpc.ServicerContext], Resp]


def translate_errors(table: ErrorTable) -> Callable[[Handler[S, Req, Resp]], Handler[S, Req, Resp]]:
    """Decorate a servicer method: domain errors become their status from ``table``; an error from a
    nested call to the other silo keeps its status and detail; anything else is INTERNAL (logged here,
    never shown to the caller beyond its type)."""

    def decorate(method: Handler[S, Req, Resp]) -> Handler[S, Req, Resp]:
        @functools.wraps(method)
        def wrapper(self: S, request: Req, context: grpc.ServicerContext) -> Resp:
            try:
                return method(self, request, context)
            except RemoteError as exc:
                abort(context, exc.code, exc)
            except Exception as exc:
                code = status_for(exc, table)
                if code is None:
                    _LOGGER.exception("unexpected error in %s", method.__qualname__)
                    abort(
                        context,
                        grpc.StatusCode.INTERNAL,
                        RuntimeError(f"internal error ({type(exc).__name__}); see the server log"),
                    )
                abort(context, code, exc)

        return wrapper

    return decorate
