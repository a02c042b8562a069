"""What a control write worker sends back when writing fails (the worker's function alone, with a fake
writer: the end-to-end behaviour is in tests/e2e/test_write_workers.py)."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import pytest

from control import write_pool
from shared.relocation.batch import Batch, BatchResult, WriteRefused
from shared.rpc.v1 import control_pb2

REQUEST = control_pb2.ImportModelBatchRequest(
    import_id="x",
    scope="global",
    model="sentry.user",
    first_ordinal=3,
    instances_json='[[3, 7, {"username": "a"}, false, {}]]',
).SerializeToString()


class Failing:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def write(self, batch: Batch) -> BatchResult:
        raise self.error


@pytest.fixture
def worker() -> Iterator[dict[str, object]]:
    saved = dict(write_pool._WORKER)
    yield write_pool._WORKER  # type: ignore[misc]
    write_pool._WORKER.clear()
    write_pool._WORKER.update(saved)


def test_a_domain_error_crosses_back_as_itself(worker: dict[str, object]) -> None:
    worker["writer"] = Failing(WriteRefused("sentry.user", 3, 7, "field 'username': too long"))
    with pytest.raises(WriteRefused) as caught:
        write_pool._write(REQUEST)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.model, copy.ordinal, copy.pk, copy.reason) == ("sentry.user", 3, 7, "write_refused")


class Unpicklable(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code}: {text}")


def test_any_other_error_crosses_back_as_its_type_and_message_and_is_logged(
    worker: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    assert isinstance(pickle.loads(pickle.dumps(ValueError("x"))), ValueError)
    with pytest.raises(TypeError):  # why the worker does not send such an error back as it is
        pickle.loads(pickle.dumps(Unpicklable(1, "boom")))
    worker["writer"] = Failing(Unpicklable(1, "boom"))
    with pytest.raises(RuntimeError) as caught:
        write_pool._write(REQUEST)
    assert str(caught.value) == "Unpicklable in a write worker: 1: boom"
    assert isinstance(pickle.loads(pickle.dumps(caught.value)), RuntimeError)
    assert "unexpected error writing sentry.user from #3" in caplog.text
