"""``siloport compare``: exit codes, the summary, the findings file, and plain, gzip or encrypted input."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.cli import main
from shared.relocation.archive import write_encrypted_archive
from shared.relocation.findings import Finding
from tests.importing import FIXTURES

SOURCE = FIXTURES / "fresh-install.json"


def changed(tmp_path: Path) -> Path:
    records = json.loads(SOURCE.read_text())
    organization = next(r for r in records if r["model"] == "sentry.organization")
    organization["fields"]["name"] = "Changed"
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(records))
    return path


def test_equal_exports_exit_0_with_a_summary_per_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(SOURCE), str(SOURCE)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^sentry\.projectkey +1 +1 +1 +0 +0$", out, re.MULTILINE), out
    assert out.endswith("equal: 31 and 31 instances\n")


def test_different_exports_exit_1_and_every_difference_is_in_the_findings_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    findings = tmp_path / "differences.json"
    assert main(["compare", str(SOURCE), str(changed(tmp_path)), "--findings-file", str(findings)]) == 1
    out = capsys.readouterr().out
    assert "field: sentry.organization #1 (left pk 1 -> right pk 1): field 'name'" in out
    assert out.endswith("different: 1 differences in 1 models\n")
    assert json.loads(findings.read_text()) == [
        {
            "kind": "field",
            "model": "sentry.organization",
            "ordinal": 1,
            "left_pk": 1,
            "right_pk": 1,
            "field": "name",
            "reason": 'field \'name\': "Testing" on the left, "Changed" on the right',
        }
    ]


def test_the_import_findings_explain_renames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = json.loads(SOURCE.read_text())
    organization = next(r for r in records if r["model"] == "sentry.organization")
    organization["fields"]["slug"] = "testing-a1"
    right = tmp_path / "right.json"
    right.write_text(json.dumps(records))
    assert main(["compare", str(SOURCE), str(right)]) == 1
    import_findings = tmp_path / "import-findings.json"
    renamed = Finding(
        "renamed", "sentry.organization", 1, 1, 1, "slug 'testing' is taken; imported as 'testing-a1'"
    )
    import_findings.write_text(json.dumps([renamed.to_json()]))
    assert main(["compare", str(SOURCE), str(right), "--import-findings", str(import_findings)]) == 0
    assert "1 changes explained by the import's findings" in capsys.readouterr().out


def test_the_date_tolerance_is_an_option(tmp_path: Path) -> None:
    records = json.loads(SOURCE.read_text())
    organization = next(r for r in records if r["model"] == "sentry.organization")
    organization["fields"]["date_added"] = "2023-06-22T22:54:33.773Z"  # 5 s later
    right = tmp_path / "right.json"
    right.write_text(json.dumps(records))
    assert main(["compare", str(SOURCE), str(right)]) == 1
    assert main(["compare", str(SOURCE), str(right), "--date-tolerance", "5"]) == 0


def test_bad_input_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('[{"model": "sentry.user", "pk": 1, "fields": {}},\n  {"model": ')
    assert main(["compare", str(SOURCE), str(broken)]) == 3
    assert f"{broken}:2:" in capsys.readouterr().err
    not_findings = tmp_path / "not-findings.json"
    not_findings.write_text('{"kind": "renamed"}')
    assert main(["compare", str(SOURCE), str(SOURCE), "--import-findings", str(not_findings)]) == 3
    assert "not a findings file" in capsys.readouterr().err
    assert main(["compare", str(SOURCE), str(tmp_path / "missing.json")]) == 2


def test_gzip_and_encrypted_inputs(tmp_path: Path) -> None:
    zipped = tmp_path / "export.json.gz"
    zipped.write_bytes(gzip.compress(SOURCE.read_bytes()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = tmp_path / "private.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encrypted = tmp_path / "export.tar"
    write_encrypted_archive(changed(tmp_path), public, encrypted)
    assert main(["compare", str(SOURCE), str(zipped)]) == 0
    assert main(["compare", str(zipped), str(encrypted), "--decrypt-with", str(private)]) == 1
    assert main(["compare", str(SOURCE), str(encrypted)]) == 2  # an archive needs the key


def test_the_import_scope_explains_what_it_resets(tmp_path: Path) -> None:
    records = json.loads(SOURCE.read_text())
    admin = next(r for r in records if r["model"] == "sentry.user" and r["fields"]["is_superuser"])
    admin["fields"].update(is_superuser=False, is_staff=False)
    right = tmp_path / "right.json"
    right.write_text(json.dumps(records))
    assert main(["compare", str(SOURCE), str(right)]) == 1
    assert main(["compare", str(SOURCE), str(right), "--import-scope", "config"]) == 1
    assert main(["compare", str(SOURCE), str(right), "--import-scope", "organizations"]) == 0


def test_an_export_with_a_byte_order_mark_compares_as_import_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marked = tmp_path / "marked.json"
    marked.write_bytes(b"\xef\xbb\xbf" + SOURCE.read_bytes())
    assert main(["compare", str(SOURCE), str(marked)]) == 0
    assert capsys.readouterr().out.endswith("equal: 31 and 31 instances\n")
