"""Optional mutual TLS between the silos, from certificate files."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.config import TlsFiles
from shared.launcher import free_port
from shared.rpc.client import PeerClient, open_channel
from shared.rpc.errors import RemoteUnavailable
from shared.rpc.v1 import common_pb2
from tests.conftest import DatabaseFactory
from tests.helpers import REGION_SERVICE, rpc, start_control, start_region

pytestmark = pytest.mark.e2e


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[Path, Path]:
    key_path, cert_path = path.with_suffix(".key"), path.with_suffix(".pem")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def make_pki(directory: Path, ca_name: str = "siloport test CA") -> tuple[Path, TlsFiles]:
    """A CA and one certificate for 127.0.0.1 that serves both as server and client identity."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(ca_name))
        .issuer_name(_name(ca_name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, _ = _write(directory / "ca", ca_key, ca)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("silo"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = _write(directory / "silo", key, cert)
    return ca_path, TlsFiles(cert=cert_path, key=key_path, ca=ca_path)


def test_mutual_tls_round_trip_and_refusal_of_clients_without_certificates(
    make_database: DatabaseFactory, tmp_path: Path
) -> None:
    ca_path, tls = make_pki(tmp_path)
    flags = ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key), "--tls-ca", str(ca_path)]
    region_port = free_port()
    control = start_control(
        make_database("control"), tmp_path, regions=f"eu=127.0.0.1:{region_port}", extra=flags
    )
    region = start_region(
        make_database("region"),
        tmp_path,
        name="eu",
        control_address=control.address,
        listen=f"127.0.0.1:{region_port}",
        extra=flags,
    )
    try:
        for silo in (control, region):
            with open_channel(silo.address, tls) as channel:
                silo.wait_healthy(channel=channel)
        client = PeerClient(region.address, REGION_SERVICE, settings=rpc(tls=tls), peer="region")
        answer = client.call("Ping", common_pb2.PingRequest(bounces=2), common_pb2.PingResponse, timeout=10)
        assert [h.silo for h in answer.path] == ["region", "control", "region"]
        client.close()

        # A client that trusts the CA but presents no certificate is refused by the server.
        no_cert = TlsFiles(ca=ca_path)
        anonymous = PeerClient(
            region.address, REGION_SERVICE, settings=rpc(tls=no_cert, max_attempts=1), peer="region"
        )
        with pytest.raises(RemoteUnavailable):
            anonymous.call("Ping", common_pb2.PingRequest(), common_pb2.PingResponse, timeout=5)
        anonymous.close()

        # A client that trusts another CA refuses the server.
        (tmp_path / "other").mkdir()
        other_ca, _ = make_pki(tmp_path / "other", "another CA")
        distrust = PeerClient(
            region.address,
            REGION_SERVICE,
            settings=rpc(tls=TlsFiles(cert=tls.cert, key=tls.key, ca=other_ca), max_attempts=1),
            peer="region",
        )
        with pytest.raises(RemoteUnavailable):
            distrust.call("Ping", common_pb2.PingRequest(), common_pb2.PingResponse, timeout=5)
        distrust.close()

        # Plaintext is not served at all.
        with grpc.insecure_channel(region.address) as channel:
            stub: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/grpc.health.v1.Health/Check"
            )
            with pytest.raises(grpc.RpcError):
                stub(b"", timeout=3)
    finally:
        region.stop()
        control.stop()
