"""Tokens for regenerated secrets: the format of ``secrets``'s, never one handed out twice, and a forked
child does not hand out its parent's bytes."""

from __future__ import annotations

import base64
import os
import re
import secrets
import uuid

from shared.relocation import tokens


def test_tokens_have_the_format_of_the_secrets_modules() -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", tokens.token_hex(16))
    urlsafe = tokens.token_urlsafe(30)
    assert len(urlsafe) == len(secrets.token_urlsafe(30)) == 40
    assert len(base64.urlsafe_b64decode(urlsafe + "=" * (-len(urlsafe) % 4))) == 30
    assert len(tokens.token_bytes(tokens.POOL_BYTES + 10)) == tokens.POOL_BYTES + 10
    key = tokens.uuid4_hex()
    assert re.fullmatch(r"[0-9a-f]{32}", key) and uuid.UUID(hex=key).version == 4


def test_no_token_repeats_across_refills() -> None:
    drawn = [tokens.token_hex(16) for _ in range(3 * tokens.POOL_BYTES // 16)]
    assert len(set(drawn)) == len(drawn)


def test_a_forked_child_does_not_reuse_its_parents_pool() -> None:
    tokens.token_hex(1)  # the pool holds bytes not handed out yet
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.close(reading)
        os.write(writing, tokens.token_hex(16).encode())
        os._exit(0)
    os.close(writing)
    theirs = os.read(reading, 64).decode()
    os.close(reading)
    os.waitpid(child, 0)
    ours = tokens.token_hex(16)
    assert len(theirs) == 32 and theirs != ours
