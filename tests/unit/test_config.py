from __future__ import annotations

import stat
from pathlib import Path

import pytest

from shared.config import parse_address, parse_region_addresses, parse_secrets, resolve_secrets
from shared.errors import ConfigError


def test_region_addresses_parse_and_reject_bad_items() -> None:
    assert parse_region_addresses("eu=10.0.0.1:5000, us=[::1]:6000") == {
        "eu": "10.0.0.1:5000",
        "us": "[::1]:6000",
    }
    assert parse_region_addresses("") == {}
    with pytest.raises(ConfigError, match="expected name=host:port"):
        parse_region_addresses("eu")
    with pytest.raises(ConfigError, match="address of region 'eu'"):
        parse_region_addresses("eu=host")
    with pytest.raises(ConfigError, match="listed twice"):
        parse_region_addresses("eu=a:1,eu=b:2")


def test_addresses_need_a_port() -> None:
    assert parse_address("127.0.0.1:0", what="x") == ("127.0.0.1", 0)
    with pytest.raises(ConfigError, match="--listen: expected HOST:PORT"):
        parse_address("localhost", what="--listen")
    with pytest.raises(ConfigError):
        parse_address("h:70000", what="x")


def test_secrets_first_signs_all_verify_and_short_ones_are_refused() -> None:
    assert parse_secrets("a" * 16 + ", " + "b" * 16) == (b"a" * 16, b"b" * 16)
    with pytest.raises(ConfigError, match="secret number 2 is shorter"):
        parse_secrets("a" * 16 + ",short")
    with pytest.raises(ConfigError, match="no secret"):
        parse_secrets(" , ")


def test_embedded_default_secret_is_created_once_and_private(tmp_path: Path) -> None:
    env = {"SILOPORT_DATA_DIR": str(tmp_path)}
    first = resolve_secrets(None, env)
    assert resolve_secrets(None, env) == first
    assert stat.S_IMODE((tmp_path / "rpc-secret").stat().st_mode) == 0o600
    assert resolve_secrets(None, {**env, "SILOPORT_RPC_SECRETS": "x" * 16}) == (b"x" * 16,)
