"""Encrypted archives and the recognition of exports by content: interoperability with an independent
implementation of Sentry's format (tests/sentry_archive.py), safe reading, specific errors, and
``siloport keys generate``."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared.cli import main
from shared.errors import SharedError
from shared.relocation import fernet_stream
from shared.relocation.archive import (
    ArchiveError,
    ArchiveLimits,
    ArchiveTruncated,
    ArchiveWriteFailed,
    DamagedArchive,
    DamagedGzip,
    DecryptorRequired,
    DuplicateMember,
    GcpKmsDecryptor,
    KeyConfigError,
    KmsUnavailable,
    MemberTooLarge,
    MissingMember,
    NotARegularFile,
    PayloadInvalid,
    PayloadTooLarge,
    PrivateKeyDecryptor,
    UnexpectedMember,
    UnrecognisedInput,
    UnsafeMember,
    WrongKey,
    load_public_key,
    plain_export,
    write_encrypted_archive,
)
from tests import sentry_archive
from tests.importing import FIXTURES

FIXTURE = FIXTURES / "org-and-project.json"


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path

    @property
    def public_pem(self) -> bytes:
        return self.public.read_bytes()


def _pair(directory: Path, label: str) -> KeyPair:
    key = sentry_archive.new_private_key()
    private, public = directory / f"{label}.pem", directory / f"{label}.pub"
    private.write_bytes(sentry_archive.private_pem(key))
    public.write_bytes(sentry_archive.public_pem(key))
    return KeyPair(private, public)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return _pair(tmp_path_factory.mktemp("keys"), "ours")


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return _pair(tmp_path_factory.mktemp("other"), "theirs")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def members_of(plaintext: bytes, keys: KeyPair) -> dict[str, bytes]:
    return dict(sentry_archive.archive_members(plaintext, keys.public_pem))


def expect(
    error: type[ArchiveError], message: str, path: Path, keys: KeyPair | None, workdir: Path, **kw: object
) -> ArchiveError:
    decryptor = PrivateKeyDecryptor(keys.private) if keys else None
    with pytest.raises(error) as caught:
        plain_export(path, decryptor, workdir, **kw)  # type: ignore[arg-type]
    assert message in str(caught.value), str(caught.value)
    assert str(caught.value).startswith(str(path)), "the message names the file first"
    assert list(workdir.iterdir()) == [], "nothing is left behind"
    return caught.value


# --- interoperability --------------------------------------------------------------------------------


def test_an_archive_from_an_independent_implementation_decrypts_to_identical_bytes(
    keys: KeyPair, tmp_path: Path, workdir: Path
) -> None:
    archive = write(tmp_path / "export.tar", sentry_archive.encrypt(FIXTURE.read_bytes(), keys.public_pem))
    plain = plain_export(archive, PrivateKeyDecryptor(keys.private), workdir)
    assert plain.parent == workdir
    assert plain.read_bytes() == FIXTURE.read_bytes()
    assert stat.S_IMODE(plain.stat().st_mode) == 0o600


def test_an_archive_siloport_writes_decrypts_with_independent_code(
    keys: KeyPair, tmp_path: Path, workdir: Path
) -> None:
    dest = tmp_path / "out" / "export.tar"
    dest.parent.mkdir()
    write_encrypted_archive(FIXTURE, keys.public_pem, dest)
    data = dest.read_bytes()
    assert sentry_archive.decrypt(data, keys.private.read_bytes()) == FIXTURE.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        infos = tar.getmembers()
    assert [(i.name, i.isfile()) for i in infos] == [
        (n, True) for n in ("export.json", "data.key", "key.pub")
    ]
    assert [p.name for p in dest.parent.iterdir()] == ["export.tar"], "no temporary file is left"
    # And siloport reads its own archives.
    assert plain_export(dest, PrivateKeyDecryptor(keys.private), workdir).read_bytes() == FIXTURE.read_bytes()


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 47, 48, fernet_stream.CHUNK - 1, fernet_stream.CHUNK + 5])
def test_streamed_fernet_tokens_are_fernet_tokens(size: int) -> None:
    key = Fernet.generate_key()
    plaintext = os.urandom(size)
    token = b"".join(fernet_stream.encrypt_stream(key, io.BytesIO(plaintext), size))
    assert len(token) == fernet_stream.token_length(size)
    assert Fernet(key).decrypt(token) == plaintext
    theirs = Fernet(key).encrypt(plaintext)
    sink = io.BytesIO()
    chunks = [theirs[i : i + 4096] for i in range(0, len(theirs), 4096)] or [b""]
    assert fernet_stream.decrypt_into(key, chunks, sink, limit=size) == size
    assert sink.getvalue() == plaintext
    least, most = fernet_stream.plaintext_bounds(len(theirs))
    assert least <= size <= most


def test_gzip_is_recognised_by_content_not_by_name(keys: KeyPair, tmp_path: Path, workdir: Path) -> None:
    compressed = write(tmp_path / "export.json", gzip.compress(FIXTURE.read_bytes()))
    plain = plain_export(compressed, None, workdir)
    assert plain != compressed and plain.read_bytes() == FIXTURE.read_bytes()
    # A gzip of an encrypted archive is decompressed, then decrypted.
    archive = sentry_archive.encrypt(FIXTURE.read_bytes(), keys.public_pem)
    tgz = write(tmp_path / "export.bin", gzip.compress(archive))
    other = workdir / "other"
    other.mkdir()
    decrypted = plain_export(tgz, PrivateKeyDecryptor(keys.private), other)
    assert decrypted.read_bytes() == FIXTURE.read_bytes()
    assert list(other.iterdir()) == [decrypted], "the decompressed archive was removed"


@pytest.mark.parametrize("prefix", [b"", b"\xef\xbb\xbf", b" \n\t\r\n"], ids=["plain", "bom", "whitespace"])
def test_plain_json_passes_through_unchanged(prefix: bytes, tmp_path: Path, workdir: Path) -> None:
    path = write(tmp_path / "export.tar.gz", prefix + FIXTURE.read_bytes())
    assert plain_export(path, None, workdir) == path
    assert list(workdir.iterdir()) == []


def test_json_holding_the_tar_magic_is_still_json(tmp_path: Path, workdir: Path) -> None:
    text = b"[" + b" " * 255 + b'"ustar"]'
    assert text[257:262] == b"ustar"
    path = write(tmp_path / "x.json", text)
    assert plain_export(path, None, workdir) == path


# --- errors, each specific ----------------------------------------------------------------------------

GARBAGE = {
    "empty": (b"", ": an export is", "found an empty file"),
    "whitespace": (b"  \n", ": an export is", "found an empty file"),
    "object": (b'\n  {"model": "sentry.user"}', ":2:3: an export is", "found a JSON object"),
    "zip": (b"PK\x03\x04rest", ": an export is", "found a zip archive"),
    "xz": (b"\xfd7zXZ\x00rest", ": an export is", "found an xz file"),
    "binary": (b"\x00\x01garbage", ":1:1: an export is", "found content starting with b'\\x00\\x01garbage'"),
}


@pytest.mark.parametrize("case", GARBAGE, ids=list(GARBAGE))
def test_garbage_is_named_for_what_it_is(case: str, tmp_path: Path, workdir: Path) -> None:
    data, where, found = GARBAGE[case]
    path = write(tmp_path / "in.json", data)
    error = expect(UnrecognisedInput, found, path, None, workdir)
    assert str(error) == (
        f"{path}{where} a JSON list of records, a gzip of one, or an encrypted archive (a tar); {found}"
    )
    assert error.exit_code == 3


def test_a_gzip_of_garbage_or_cut_short(tmp_path: Path, workdir: Path) -> None:
    path = write(tmp_path / "in.gz", gzip.compress(b"hello"))
    expect(UnrecognisedInput, f"{path} (decompressed):1:1: an export is a JSON list", path, None, workdir)
    full = gzip.compress(FIXTURE.read_bytes())
    cut = write(tmp_path / "cut.gz", full[: len(full) // 2])
    expect(DamagedGzip, "the gzip stream is truncated", cut, None, workdir)
    damaged = write(tmp_path / "bad.gz", full[:10] + b"\xff" * 40 + full[50:])
    expect(DamagedGzip, "damaged gzip", damaged, None, workdir)


def test_an_archive_without_a_key_says_how_to_give_one(keys: KeyPair, tmp_path: Path, workdir: Path) -> None:
    path = write(tmp_path / "a.json", sentry_archive.encrypt(b"[]", keys.public_pem))
    error = expect(
        DecryptorRequired,
        "this is an encrypted archive; pass --decrypt-with PRIVATE_KEY.pem or --decrypt-with-gcp-kms "
        "CONFIG.json",
        path,
        None,
        workdir,
    )
    assert error.exit_code == 2


def test_wrong_key(keys: KeyPair, other_keys: KeyPair, tmp_path: Path, workdir: Path) -> None:
    path = write(tmp_path / "a.tar", sentry_archive.encrypt(FIXTURE.read_bytes(), other_keys.public_pem))
    error = expect(WrongKey, "this archive was encrypted for another key", path, keys, workdir)
    assert "key.pub is not the public key of" in str(error) and error.exit_code == 3
    # key.pub claims our key but data.key was wrapped for another: the unwrap fails.
    members = members_of(FIXTURE.read_bytes(), other_keys)
    members["key.pub"] = keys.public_pem
    path = write(tmp_path / "b.tar", sentry_archive.tar_of(members.items()))
    error = expect(WrongKey, "this archive was encrypted for another key", path, keys, workdir)
    assert f"data.key does not decrypt with {keys.private}" in str(error)


def test_tampered_payload(keys: KeyPair, tmp_path: Path, workdir: Path) -> None:
    members = members_of(FIXTURE.read_bytes(), keys)
    token = bytearray(members["export.json"])
    middle = len(token) // 2
    token[middle] = ord("A") if token[middle] != ord("A") else ord("B")  # still base64: a flipped byte
    members["export.json"] = bytes(token)
    path = write(tmp_path / "a.tar", sentry_archive.tar_of(members.items()))
    expect(
        PayloadInvalid,
        "the data key does not decrypt the payload (the archive is damaged or was tampered with): "
        "member 'export.json'",
        path,
        keys,
        workdir,
    )
    members["export.json"] = bytes(token[:-3])  # not even base64 any more
    path = write(tmp_path / "b.tar", sentry_archive.tar_of(members.items()))
    expect(PayloadInvalid, "the data key does not decrypt the payload", path, keys, workdir)


def test_truncated_archives(keys: KeyPair, tmp_path: Path, workdir: Path) -> None:
    data = sentry_archive.encrypt(FIXTURE.read_bytes(), keys.public_pem)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        infos = {i.name: i for i in tar.getmembers()}
    export, last = infos["export.json"], infos["key.pub"]
    inside_data = write(tmp_path / "a.tar", data[: export.offset_data + export.size // 2])
    expect(
        ArchiveTruncated, "the archive is truncated: member 'export.json' needs", inside_data, keys, workdir
    )
    inside_header = write(tmp_path / "b.tar", data[: last.offset + 100])
    expect(ArchiveTruncated, "truncated inside the tar header at offset", inside_header, keys, workdir)
    whole_member_lost = write(tmp_path / "c.tar", data[: last.offset])
    expect(
        MissingMember,
        "member 'key.pub' is missing (the archive is truncated: it has no end-of-archive marker)",
        whole_member_lost,
        keys,
        workdir,
    )
    first_header = write(tmp_path / "d.tar", data[:300])
    expect(ArchiveTruncated, "truncated inside its first tar header", first_header, keys, workdir)


@pytest.mark.parametrize("name", ["../export.json", "/export.json", "sub/export.json", ".."])
def test_a_member_with_a_path_is_refused(name: str, keys: KeyPair, tmp_path: Path, workdir: Path) -> None:
    members = members_of(b"[]", keys)
    path = write(
        tmp_path / "a.tar", sentry_archive.tar_of([(name, members["export.json"]), *members.items()])
    )
    expect(UnsafeMember, f"member {name!r} has a path", path, keys, workdir)


def _tar_with(special: tarfile.TarInfo, rest: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(special)
        for name, data in rest.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("kind", "described"),
    [
        (tarfile.SYMTYPE, "a symbolic link (to '/etc/passwd')"),
        (tarfile.LNKTYPE, "a hard link (to '/etc/passwd')"),
        (tarfile.DIRTYPE, "a directory"),
        (tarfile.CHRTYPE, "a device"),
        (tarfile.FIFOTYPE, "a FIFO"),
    ],
    ids=["symlink", "hardlink", "directory", "device", "fifo"],
)
def test_only_regular_files_are_read(
    kind: bytes, described: str, keys: KeyPair, tmp_path: Path, workdir: Path
) -> None:
    members = members_of(b"[]", keys)
    link = tarfile.TarInfo("export.json")
    link.type, link.linkname = kind, "/etc/passwd"
    del members["export.json"]
    path = write(tmp_path / "a.tar", _tar_with(link, members))
    expect(
        NotARegularFile,
        f"member 'export.json' is {described}; an encrypted archive holds only",
        path,
        keys,
        workdir,
    )


def test_oversized_members_are_refused_from_their_headers(
    keys: KeyPair, tmp_path: Path, workdir: Path
) -> None:
    plaintext = FIXTURE.read_bytes()
    path = write(tmp_path / "a.tar", sentry_archive.encrypt(plaintext, keys.public_pem))
    size = len(members_of(plaintext, keys)["export.json"])
    expect(
        MemberTooLarge,
        f"member 'export.json' is {size:,} bytes, more than the limit of 1,000",
        path,
        keys,
        workdir,
        limits=ArchiveLimits(export_member_bytes=1000),
    )
    expect(
        MemberTooLarge,
        "member 'data.key' is 256 bytes, more than the limit of 100",
        path,
        keys,
        workdir,
        limits=ArchiveLimits(key_member_bytes=100),
    )
    # The decrypted payload: from the token's size when it must exceed, else while decrypting.
    expect(
        PayloadTooLarge,
        "member 'export.json' decrypts to at least",
        path,
        keys,
        workdir,
        limits=ArchiveLimits(payload_bytes=100),
    )
    expect(
        PayloadTooLarge,
        f"member 'export.json' decrypts to more than {len(plaintext) - 1:,} bytes",
        path,
        keys,
        workdir,
        limits=ArchiveLimits(payload_bytes=len(plaintext) - 1),
    )
    bomb = write(tmp_path / "bomb.gz", gzip.compress(b"[" + b" " * 1_000_000 + b"]"))
    expect(
        PayloadTooLarge,
        "decompresses to more than 65,536 bytes",
        bomb,
        None,
        workdir,
        limits=ArchiveLimits(payload_bytes=65536),
    )


def test_a_huge_extended_header_is_refused_before_it_is_read(
    keys: KeyPair, tmp_path: Path, workdir: Path
) -> None:
    members = members_of(b"[]", keys)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.pax_headers = {"comment": "x" * 200_000}
            tar.addfile(info, io.BytesIO(data))
    path = write(tmp_path / "a.tar", buffer.getvalue())
    expect(MemberTooLarge, "the extended tar header", path, keys, workdir)


def test_unexpected_duplicate_and_missing_members(keys: KeyPair, tmp_path: Path, workdir: Path) -> None:
    members = members_of(b"[]", keys)
    extra = write(tmp_path / "a.tar", sentry_archive.tar_of([*members.items(), ("notes.txt", b"hi")]))
    expect(
        UnexpectedMember,
        "unexpected member 'notes.txt'; an encrypted archive holds only export.json, data.key, key.pub",
        extra,
        keys,
        workdir,
    )
    twice = write(tmp_path / "b.tar", sentry_archive.tar_of([*members.items(), ("data.key", b"x")]))
    expect(DuplicateMember, "member 'data.key' appears more than once", twice, keys, workdir)
    del members["data.key"]
    missing = write(tmp_path / "c.tar", sentry_archive.tar_of(members.items()))
    error = expect(MissingMember, "member 'data.key' is missing", missing, keys, workdir)
    assert "truncated" not in str(error)


def test_damaged_archives(keys: KeyPair, tmp_path: Path, workdir: Path) -> None:
    members = members_of(b"[]", keys)
    members["key.pub"] = b"not a key"
    bad_pub = write(tmp_path / "a.tar", sentry_archive.tar_of(members.items()))
    expect(DamagedArchive, "member 'key.pub' is not a PEM public key", bad_pub, keys, workdir)
    data = bytearray(sentry_archive.encrypt(b"[]", keys.public_pem))
    with tarfile.open(fileobj=io.BytesIO(bytes(data)), mode="r:") as tar:
        second = tar.getmembers()[1].offset
    data[second + 10] ^= 0x55  # the second header's checksum no longer matches
    bad_header = write(tmp_path / "b.tar", bytes(data))
    expect(DamagedArchive, f"the tar header at offset {second:,} is damaged", bad_header, keys, workdir)
    not_json = write(tmp_path / "c.tar", sentry_archive.encrypt(b"hello", keys.public_pem))
    expect(
        UnrecognisedInput, "the decrypted export.json is not a JSON list of records", not_json, keys, workdir
    )


def test_every_error_is_a_shared_error_with_an_exit_code() -> None:
    for error in (
        WrongKey,
        PayloadInvalid,
        ArchiveTruncated,
        UnsafeMember,
        MemberTooLarge,
        UnrecognisedInput,
    ):
        assert issubclass(error, ArchiveError) and issubclass(error, SharedError)
        assert error.exit_code == 3
    assert KeyConfigError.exit_code == DecryptorRequired.exit_code == 2


# --- key files and providers ---------------------------------------------------------------------------


def test_key_files_are_checked(keys: KeyPair, tmp_path: Path) -> None:
    assert load_public_key(keys.public) == keys.public_pem
    assert PrivateKeyDecryptor(keys.private).public_key_pem() == keys.public_pem
    with pytest.raises(KeyConfigError, match="holds a public key; decrypting takes the private key"):
        PrivateKeyDecryptor(keys.public)
    with pytest.raises(KeyConfigError, match="holds a private key; give the public key"):
        load_public_key(keys.private)
    garbage = write(tmp_path / "garbage.pem", b"hello")
    with pytest.raises(KeyConfigError, match=f"{garbage}: not a PEM RSA private key"):
        PrivateKeyDecryptor(garbage)
    with pytest.raises(KeyConfigError, match=f"{garbage}: not a PEM RSA public key"):
        load_public_key(garbage)
    with pytest.raises(KeyConfigError, match="cannot read the private key"):
        PrivateKeyDecryptor(tmp_path / "missing.pem")
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_private = write(
        tmp_path / "ec.pem",
        ec_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    ec_public = write(
        tmp_path / "ec.pub",
        ec_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    with pytest.raises(KeyConfigError, match="not a PEM RSA private key"):
        PrivateKeyDecryptor(ec_private)
    with pytest.raises(KeyConfigError, match="not RSA"):
        load_public_key(ec_public)
    with pytest.raises(KeyConfigError, match="not RSA"):
        write_encrypted_archive(FIXTURE, ec_public.read_bytes(), tmp_path / "x.tar")
    assert not (tmp_path / "x.tar").exists()


def test_gcp_kms_without_the_client_says_how_to_install_it(tmp_path: Path) -> None:
    config = {"project_id": "p", "location": "global", "key_ring": "r", "key": "k", "version": "1"}
    path = write(tmp_path / "kms.json", json.dumps(config).encode())
    with pytest.raises(KmsUnavailable) as caught:
        GcpKmsDecryptor(path)
    assert "pip install 'siloport[gcp]'" in str(caught.value)
    assert caught.value.exit_code == 2
    del config["key_ring"]
    path.write_text(json.dumps(config))
    with pytest.raises(KeyConfigError, match="KMS config needs 'key_ring'"):
        GcpKmsDecryptor(path)


# --- siloport keys generate -----------------------------------------------------------------------------


def test_keys_generate_writes_a_matching_pair_with_a_private_mode(
    tmp_path: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private, public = tmp_path / "k.pem", tmp_path / "k.pub"
    old_umask = os.umask(0)
    try:
        assert (
            main(["keys", "generate", "--private", str(private), "--public", str(public), "--bits", "2048"])
            == 0
        )
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in private.read_bytes() and b"BEGIN PUBLIC KEY" in public.read_bytes()
    assert "SHA256:" in capsys.readouterr().out
    assert PrivateKeyDecryptor(private).public_key_pem() == load_public_key(public)
    archive = write(tmp_path / "a.tar", sentry_archive.encrypt(b"[]", public.read_bytes()))
    assert plain_export(archive, PrivateKeyDecryptor(private), workdir).read_bytes() == b"[]"

    before = private.read_bytes(), public.read_bytes()
    args = ["keys", "generate", "--private", str(private), "--public", str(public), "--bits", "2048"]
    assert main(args) == 2
    assert "k.pem: already exists; pass --force to replace it" in capsys.readouterr().err
    assert (private.read_bytes(), public.read_bytes()) == before
    private.chmod(0o644)
    assert main([*args, "--force"]) == 0
    assert private.read_bytes() != before[0] and stat.S_IMODE(private.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "k.pem", "k.pub", "work"]

    assert (
        main(
            [
                "keys",
                "generate",
                "--private",
                str(tmp_path / "s.pem"),
                "--public",
                str(tmp_path / "s.pub"),
                "--bits",
                "1024",
            ]
        )
        == 2
    )
    assert "--bits must be between 2048 and 16384" in capsys.readouterr().err
    assert not (tmp_path / "s.pem").exists()


def test_a_negative_size_from_an_extended_header_is_damage(
    keys: KeyPair, tmp_path: Path, workdir: Path
) -> None:
    members = members_of(b"[]", keys)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if name == "data.key":
                info.pax_headers = {"size": "-5"}
            tar.addfile(info, io.BytesIO(data))
    path = write(tmp_path / "a.tar", buffer.getvalue())
    expect(DamagedArchive, "member 'data.key' has a negative size", path, keys, workdir)


def test_writing_where_it_cannot_is_an_archive_error(keys: KeyPair, tmp_path: Path) -> None:
    with pytest.raises(ArchiveWriteFailed, match="cannot write the archive"):
        write_encrypted_archive(FIXTURE, keys.public_pem, tmp_path / "missing" / "a.tar")
    with pytest.raises(ArchiveWriteFailed, match=r"nothing\.json"):
        write_encrypted_archive(tmp_path / "nothing.json", keys.public_pem, tmp_path / "a.tar")
    assert list(tmp_path.iterdir()) == []


def test_a_streamed_token_refuses_every_alteration() -> None:
    key = Fernet.generate_key()
    token = Fernet(key).encrypt(b"[" + b"x" * 100 + b"]")
    raw = bytearray(base64.urlsafe_b64decode(token))
    for position in (
        0,
        5,
        12,
        30,
        len(raw) // 2,
        len(raw) - 40,
        len(raw) - 1,
    ):  # version, time, IV, body, HMAC
        altered = bytearray(raw)
        altered[position] ^= 0x01
        with pytest.raises(fernet_stream.InvalidToken):
            fernet_stream.decrypt_into(key, [base64.urlsafe_b64encode(altered)], io.BytesIO(), limit=1000)
    with pytest.raises(fernet_stream.InvalidToken, match="HMAC"):
        fernet_stream.decrypt_into(Fernet.generate_key(), [token], io.BytesIO(), limit=1000)
    for short in (b"", token[:40], token[:-4]):
        with pytest.raises(fernet_stream.InvalidToken):
            fernet_stream.decrypt_into(key, [short], io.BytesIO(), limit=1000)
    with pytest.raises(fernet_stream.InvalidToken, match="after the base64 padding"):
        fernet_stream.decrypt_into(key, [token, b"AAAA"], io.BytesIO(), limit=1000)
