"""The HMAC signature scheme on its own (the servers' use of it is tested end to end)."""

from __future__ import annotations

from shared.rpc.auth import SIGNATURE_KEY, Signer, Verifier

METHOD = "/siloport.v1.ControlService/Ping"
BODY = b"\x08\x01request-bytes"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_signed_call_verifies_once_and_its_replay_is_refused() -> None:
    clock = Clock()
    metadata = Signer([b"k" * 20], clock=clock).metadata(METHOD, BODY)
    verifier = Verifier([b"k" * 20], clock=clock)
    assert verifier.check(METHOD, metadata, BODY) is None
    assert "replayed" in (verifier.check(METHOD, metadata, BODY) or "")


def test_signature_binds_method_body_and_secret() -> None:
    clock = Clock()
    metadata = Signer([b"k" * 20], clock=clock).metadata(METHOD, BODY)
    verifier = Verifier([b"k" * 20], clock=clock)
    assert "does not match" in (verifier.check("/siloport.v1.ControlService/Other", metadata, BODY) or "")
    assert "does not match" in (verifier.check(METHOD, metadata, BODY + b"x") or "")
    other = Verifier([b"x" * 20], clock=clock)
    assert "does not match" in (other.check(METHOD, metadata, BODY) or "")


def test_missing_and_malformed_signatures_are_refused() -> None:
    verifier = Verifier([b"k" * 20])
    assert "expected one" in (verifier.check(METHOD, (), BODY) or "")
    assert "malformed" in (verifier.check(METHOD, ((SIGNATURE_KEY, "v1:abc"),), BODY) or "")
    assert "malformed" in (verifier.check(METHOD, ((SIGNATURE_KEY, "v2:1:" + "0" * 32 + ":ff"),), BODY) or "")


def test_stale_timestamps_are_refused_both_ways() -> None:
    clock = Clock()
    verifier = Verifier([b"k" * 20], window_s=300, clock=clock)
    old = Signer([b"k" * 20], clock=Clock(clock.now - 301)).metadata(METHOD, BODY)
    future = Signer([b"k" * 20], clock=Clock(clock.now + 301)).metadata(METHOD, BODY)
    assert "stale" in (verifier.check(METHOD, old, BODY) or "")
    assert "stale" in (verifier.check(METHOD, future, BODY) or "")
    fresh = Signer([b"k" * 20], clock=Clock(clock.now - 299)).metadata(METHOD, BODY)
    assert verifier.check(METHOD, fresh, BODY) is None


def test_rotation_first_secret_signs_every_secret_verifies() -> None:
    clock = Clock()
    old, new = b"o" * 20, b"n" * 20
    signed_by_old = Signer([old], clock=clock).metadata(METHOD, BODY)
    signed_by_new = Signer([new, old], clock=clock).metadata(METHOD, BODY)
    verifier = Verifier([new, old], clock=clock)
    assert verifier.check(METHOD, signed_by_old, BODY) is None
    assert verifier.check(METHOD, signed_by_new, BODY) is None
    assert "does not match" in (Verifier([old], clock=clock).check(METHOD, signed_by_new, BODY) or "")


def test_nonces_are_forgotten_once_their_window_has_passed() -> None:
    clock = Clock()
    signer = Signer([b"k" * 20], clock=clock)
    verifier = Verifier([b"k" * 20], window_s=10, clock=clock)
    for _ in range(50):
        assert verifier.check(METHOD, signer.metadata(METHOD, BODY), BODY) is None
    clock.now += 11
    verifier.check(METHOD, signer.metadata(METHOD, BODY), BODY)
    assert len(verifier._seen) == 1  # the 50 expired nonces were dropped
