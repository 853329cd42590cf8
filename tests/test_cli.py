"""``dicomnb get`` from a shell: summary, JSON and exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dicomnb.cli import main

FIELDS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "PatientID", "Modality",
          "path"]


def test_get_prints_a_summary(sample_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "-l", str(sample_tree)]) == 0
    out = capsys.readouterr().out
    assert "4 instances" in out and "1 images" in out and "1 other files skipped" in out


def test_get_json(sample_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "-l", str(sample_tree / "CT_small.dcm"), "-l", str(sample_tree / "sub"),
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in ["instances", "images", "attachments", "missing", "errors"]:
        assert isinstance(data[key], list)
    assert len(data["instances"]) == 4  # CT_small.dcm, and sub/: MRSMALL, raw.bin, deeper/plan.IMA
    for instance in data["instances"]:
        assert set(FIELDS) <= set(instance)
        assert instance["SOPInstanceUID"] and instance["StudyInstanceUID"]
        assert os.path.isfile(instance["path"])
    assert {i["Modality"] for i in data["instances"]} >= {"CT", "MR", "RTPLAN"}


def test_get_no_recursive(sample_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "-l", str(sample_tree), "--no-recursive", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["instances"]) == 1


def test_errors_are_reported_with_exit_0(sample_tree: Path, test_files: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (sample_tree / "cut.dcm").write_bytes((test_files / "CT_small.dcm").read_bytes()[:500])
    assert main(["get", "-l", str(sample_tree), "--json"]) == 0
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert [(Path(e["path"]).name, e["error"]) for e in errors] == [("cut.dcm", "TruncatedFileError")]


@pytest.mark.parametrize("args", [[], ["get"], ["get", "-l", "/no/such/path"], ["frobnicate"],
                                  ["get", "-l", ".", "--password-file", "/no/such/file"]])
def test_unusable_arguments_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(main(args))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err


def test_encrypted_zip_exit_3(sample_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyzipper

    archive = tmp_path / "secret.zip"
    with pyzipper.AESZipFile(archive, "w", compression=pyzipper.ZIP_DEFLATED,
                             encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(b"s3cret")
        zf.write(sample_tree / "CT_small.dcm", "CT_small.dcm")
    assert main(["get", "-z", str(archive)]) == 3
    assert "password" in capsys.readouterr().err
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("nope\n")
    assert main(["get", "-z", str(archive), "--password-file", str(wrong), "--json"]) == 3
    assert json.loads(capsys.readouterr().out)["errors"][0]["error"] == "WrongPassword"
    right = tmp_path / "right.txt"
    right.write_text("s3cret\n")
    assert main(["get", "-z", str(archive), "--password-file", str(right), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["instances"]) == 1


def test_command_line_entry_point(sample_tree: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "dicomnb", "get", "-l", str(sample_tree), "--json"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["instances"]) == 4
