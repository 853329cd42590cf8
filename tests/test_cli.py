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


# --- Weasis's $dicom:get options, and `dicomnb open` ---------------------------------------------------------

GET_KEYS = {"counts", "stopped", "instances", "images", "attachments", "missing", "errors",
            "retrieved", "not_retrieved", "cancelled", "messages", "jobs"}


def ct_small_manifest(folder: Path, base_url: str) -> Path:
    """A manifest listing pydicom's CT_small.dcm (loaded in the suite's archives) at ``base_url``."""
    from netcommon import CT_INSTANCE, CT_SERIES, CT_STUDY

    path = folder / "manifest.xml"
    path.write_text(f'<manifest xmlns="http://www.weasis.org/xsd/2.5"><arcQuery arcId="pacs" baseUrl="{base_url}">'
                    '<Message title="Hello" description="from the archive" severity="INFO"/>'
                    f'<Patient PatientID="1CT1"><Study StudyInstanceUID="{CT_STUDY}">'
                    f'<Series SeriesInstanceUID="{CT_SERIES}"><Instance SOPInstanceUID="{CT_INSTANCE}"/></Series>'
                    "</Study></Patient></arcQuery></manifest>")
    return path


def test_open_runs_a_weasis_uri_and_prints_the_get_json(sample_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from urllib.parse import quote

    from netcommon import CT_SERIES

    uri = "weasis://?" + quote(f"$dicom:get -l {sample_tree} $dicom:close -s {CT_SERIES}", safe="")
    assert main(["open", uri, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == GET_KEYS | {"commands"} and len(data["instances"]) == 4
    assert [c["command"] for c in data["commands"]] == ["dicom:get", "dicom:close"]
    assert data["commands"][1]["closed"]["series"] == [CT_SERIES]
    assert main(["open", f"$dicom:get -l {sample_tree} $dicom:close -a"]) == 0
    out = capsys.readouterr().out
    assert "$dicom:get: 4 patients" in out and "$dicom:close: closed 4 instances" in out
    assert main(["open", "weasis://?%24dicom%3Aget+-x"]) == 2
    assert "dicom:get has no option '-x'" in capsys.readouterr().err


def test_get_portable_inline_and_manifest_errors(tmp_path: Path, test_files: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import base64
    import gzip

    (tmp_path / "IMAGES").mkdir()
    (tmp_path / "IMAGES" / "ct").write_bytes((test_files / "CT_small.dcm").read_bytes())
    monkeypatch.chdir(tmp_path)
    assert main(["get", "-p", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["instances"] == 1
    bad = tmp_path / "bad.xml"
    bad.write_text("<wado/>")
    assert main(["get", "-w", str(bad), "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["errors"][0]["error"] == "ManifestError" and "<wado>" in captured.err
    message_only = ('<manifest xmlns="http://www.weasis.org/xsd/2.5"><arcQuery>'
                    '<Message title="No study" description="none found" severity="WARN"/></arcQuery></manifest>')
    inline = base64.b64encode(gzip.compress(message_only.encode())).decode()
    assert main(["get", "-i", inline]) == 0
    assert "message [WARN] No study: none found" in capsys.readouterr().out


def test_get_a_manifest_whose_archive_is_down_exits_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import peers

    base = f"http://127.0.0.1:{peers.free_port()}/wado"
    assert main(["get", "-w", str(ct_small_manifest(tmp_path, base)), "--json"]) == 4
    captured = capsys.readouterr()
    (error,) = json.loads(captured.out)["errors"]
    assert error["error"] == "ConnectionFailed" and f"({base}): connection refused" in error["message"]
    assert f"({base}): connection refused" in captured.err


@pytest.mark.integration
def test_get_and_open_retrieve_a_manifest_from_orthanc(orthanc: object, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from urllib.parse import quote

    from netcommon import CT_INSTANCE

    manifest = ct_small_manifest(tmp_path, orthanc.wado_url)  # type: ignore[attr-defined]
    assert main(["get", "-w", str(manifest), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == GET_KEYS and data["retrieved"] == 1 and data["not_retrieved"] == []
    assert data["messages"] == [{"title": "Hello", "description": "from the archive", "severity": "INFO"}]
    (instance,) = data["instances"]
    assert instance["SOPInstanceUID"] == CT_INSTANCE and instance["source"] == "wado-uri"
    import pydicom

    assert pydicom.dcmread(instance["path"]).SOPInstanceUID == CT_INSTANCE
    # the same from a weasis:// URI, in a process of its own: in the store already, nothing fetched
    uri = "weasis://?" + quote(f"$dicom:get -w {manifest}", safe="")
    result = subprocess.run([sys.executable, "-m", "dicomnb", "open", uri, "--json"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    again = json.loads(result.stdout)
    assert again["retrieved"] == 0 and again["instances"][0]["path"] == instance["path"]
    assert [c["command"] for c in again["commands"]] == ["dicom:get"]


def test_the_progress_bar_counts_this_commands_downloads_not_earlier_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from dicomnb import retrieving
    from dicomnb.cli import _ProgressPrinter
    from dicomnb.core.downloads import DownloadProgress, JobStatus

    def job(job_id: str, state: str, done: int, total: int) -> JobStatus:
        return JobStatus(job_id, state, "pacs", "c-get", "1.2.3", f"1.2.3.{job_id}", f"series {job_id}",
                         done, total, done * 1000, total - done)

    earlier = job("old", "complete", 7, 7)
    jobs = [earlier]
    monkeypatch.setattr(retrieving.downloads, "status", lambda: DownloadProgress(tuple(jobs)))
    terminal = io.StringIO()
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    with _ProgressPrinter(terminal) as printer:
        jobs.append(job("new", "running", 2, 4))
        printer.update(retrieving.downloads.status())
        assert "2/4 instances, 1 series running" in terminal.getvalue()
        jobs[1] = job("new", "complete", 4, 4)
    assert terminal.getvalue().rstrip().endswith("4/4 instances, 0 series running")
    assert "11" not in terminal.getvalue()  # the earlier job's 7 never joins the count
