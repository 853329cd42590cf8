"""Running Weasis commands and weasis:// URIs (dicomnb.runner): in order, each with its effect.

The local commands run on pydicom's files; the remote ones against an Orthanc of this module's
own holding one CT study (3 series of 5 instances, :func:`test_manifest_retrieve.ct_study`).
"""

from __future__ import annotations

import base64
import gzip
import json
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from netcommon import CT_SERIES, CT_STUDY
from test_manifest_retrieve import NS, Study, assert_in_store, ct_archive

import dicomnb
from dicomnb import runner
from dicomnb.core.errors import CommandError, InputError, ManifestError
from dicomnb.core.store import instance_path

GET_KEYS = {"counts", "stopped", "instances", "images", "attachments", "missing", "errors",
            "retrieved", "not_retrieved", "cancelled", "messages", "jobs"}


def uri(text: str) -> str:
    """A weasis:// URI holding these commands, URL-encoded as a web page would write it."""
    return "weasis://?" + quote(text, safe="")


# --- local commands ------------------------------------------------------------------------------------

def test_a_command_that_cannot_be_parsed_runs_nothing(sample_tree: Path) -> None:
    with pytest.raises(CommandError, match=r"unknown command \$dicom:bogus.*\$dicom:get"):
        runner.run(f"$dicom:get -l {sample_tree} $dicom:bogus -x")
    with pytest.raises(CommandError, match="dicom:get has no option '-q'"):
        runner.open_uri(uri(f"$dicom:get -l {sample_tree} -q"))
    with pytest.raises(CommandError, match="is not a weasis:// URI"):
        runner.open_uri(f"$dicom:get -l {sample_tree}")
    assert len(dicomnb.catalog) == 0


def test_get_then_close_by_series_study_patient_and_all(sample_tree: Path, test_files: Path) -> None:
    (got,) = runner.run(f"$dicom:get -l {sample_tree}")
    assert got.name == "dicom:get" and got.ok and len(got.report.instances) == 4
    data = got.to_json()
    assert data["command"] == "dicom:get" and set(data) == GET_KEYS | {"command"}
    assert data["counts"]["instances"] == 4 and data["retrieved"] == 0 and data["not_retrieved"] == []
    closed = runner.run(f"$dicom:close -s {CT_SERIES}")[0]
    assert [r.SOPInstanceUID for r in closed.closed] == [r.SOPInstanceUID for r in got.report.instances
                                                         if r.SeriesInstanceUID == CT_SERIES]
    assert closed.to_json() == {"command": "dicom:close", "stopped": [],
                                "closed": {"instances": 1, "series": [CT_SERIES], "studies": [CT_STUDY]}}
    assert len(dicomnb.catalog) == 3 and CT_STUDY not in set(dicomnb.catalog.instances.StudyInstanceUID)
    mr = dicomnb.catalog.instances.iloc[0]
    runner.run(f"$dicom:close -y {mr.StudyInstanceUID} $dicom:get -l {test_files / 'CT_small.dcm'}")
    assert len(dicomnb.catalog) == 3 and mr.SOPInstanceUID not in dicomnb.catalog
    patient = dicomnb.catalog.get(got.report.instances[0].SOPInstanceUID)
    assert patient is not None
    (by_patient,) = runner.run(f"$dicom:close -p {patient.PatientID}")
    assert {r.PatientID for r in by_patient.closed} == {patient.PatientID}
    (everything,) = runner.run("$dicom:close -a")
    assert len(dicomnb.catalog) == 0 and len(everything.closed) >= 1


def test_one_failing_source_is_recorded_and_the_others_run(sample_tree: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text(f'<manifest xmlns="{NS.replace("2.5", "3.0")}"/>')
    text = f"$dicom:get -l {tmp_path / 'nope'} -w {bad} -l {sample_tree} $dicom:close -a $dicom:get -l {sample_tree}"
    first, closed, again = runner.run(text)
    assert [type(f) for f in first.failures] == [InputError, ManifestError] and not first.ok
    assert [(e.error, e.source) for e in first.report.errors] == [("InputError", "local"),
                                                                ("ManifestError", "manifest")]
    assert "version 3.0" in first.report.errors[1].message and len(first.report.instances) == 4
    assert len(closed.closed) == 4 and len(again.report.instances) == 4 and len(dicomnb.catalog) == 4
    dicomnb.catalog.clear()
    with pytest.raises(ManifestError, match="version 3.0"):
        runner.run(f"$dicom:get -w {bad} $dicom:get -l {sample_tree}", strict=True)
    assert len(dicomnb.catalog) == 0  # the command after it did not run


def test_portable_folders_or_the_dicomdir_beside_the_working_directory(tmp_path: Path, test_files: Path) -> None:
    media = tmp_path / "media"
    (media / "DICOM" / "sub").mkdir(parents=True)
    shutil.copy(test_files / "CT_small.dcm", media / "DICOM" / "sub" / "IM1")
    (got,) = runner.run("$dicom:get -p", cwd=media)
    assert [r.SOPInstanceUID for r in got.report.instances] == [dicomnb.catalog.records()[0].SOPInstanceUID]
    dicomnb.catalog.clear()
    cd = tmp_path / "cd"
    shutil.copytree(test_files / "dicomdirtests", cd)
    (from_dicomdir,) = runner.run("$dicom:get --portable", cwd=cd)
    assert from_dicomdir.report.instances and from_dicomdir.report.tree is not None
    assert {r.source for r in from_dicomdir.report.instances} == {"dicomdir"}
    (nothing,) = runner.run("$dicom:get -p", cwd=tmp_path)
    assert "no DICOMDIR and no folder named dicom" in str(nothing.failures[0])


def test_image_get_help_and_weasis_config(sample_tree: Path) -> None:
    image, text, config, usage = runner.run(
        f"$image:get -f {sample_tree / 'photo.png'} -f {sample_tree / 'notes.txt'} "
        "$image:get -u file:///x.png $weasis:config cdb=http://x $image:get -?")
    assert [r.format for r in image.report.images] == ["png"] and len(dicomnb.catalog.images) == 1
    assert "notes.txt is not an image" in str(image.failures[0])
    assert "takes an http(s) URL" in str(text.failures[0])
    assert "skipped" in config.usage and usage.name == "help" and usage.usage.startswith("Usage: image:get")


def test_a_cancel_stops_before_the_next_command(sample_tree: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    assert runner.run(f"$dicom:get -l {sample_tree}", cancel=cancel) == []
    assert len(dicomnb.catalog) == 0


# --- against Orthanc --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Study]]:
    with ct_archive(tmp_path_factory) as found:
        yield found


@pytest.mark.integration
def test_a_weasis_uri_runs_its_commands_in_order(archive: Any, test_files: Path, tmp_path: Path) -> None:
    orthanc, study = archive
    local = tmp_path / "local"
    local.mkdir()
    shutil.copy(test_files / "CT_small.dcm", local)
    shutil.copy(test_files / "MR_small.dcm", local)
    text = (f"$dicom:get -l {local} $dicom:close -s {CT_SERIES} "
            f"$dicom:rs -u {orthanc.dicomweb_url} -r studyUID={study.uid} --query-header 'X-Q: 1'")
    got, closed, rs = runner.run(uri(text))
    assert (got.name, closed.name, rs.name) == ("dicom:get", "dicom:close", "dicom:rs")
    assert len(got.report.instances) == 2
    assert [r.SeriesInstanceUID for r in closed.closed] == [CT_SERIES]  # closed before the retrieve ran
    assert rs.retrieved == 15 and rs.ok and len(rs.jobs) == 3
    assert_in_store(study, rs.report.instances, 15)
    assert rs.to_json()["counts"]["instances"] == 15 and rs.to_json()["retrieved"] == 15
    assert len(dicomnb.catalog) == 16 and CT_SERIES not in set(dicomnb.catalog.instances.SeriesInstanceUID)


@pytest.mark.integration
def test_direct_urls_zip_urls_images_and_inline_manifests(archive: Any) -> None:
    orthanc, study = archive
    series = list(study.series)[0]
    sop = study.series[series][0][0]
    wado = (f"{orthanc.wado_url}?requestType=WADO&studyUID={study.uid}&seriesUID={series}&objectUID={sop}"
            "&contentType=application/dicom")
    (remote,) = runner.run(uri(f"$dicom:get -r {wado}"))
    (record,) = remote.report.instances
    assert Path(record.path) == instance_path(study.uid, series, sop) and record.source == "remote"
    assert Path(record.path).read_bytes() == study.files[sop].read_bytes() and sop in dicomnb.catalog
    assert not [p for p in Path(record.path).parents[2].rglob(".part-*")]
    inline = base64.b64encode(gzip.compress(study.xml(orthanc.wado_url, series=[series]).encode())).decode()
    (manifest,) = runner.run(uri(f"$dicom:get -i {inline}"))
    assert manifest.retrieved == 4 and len(manifest.report.instances) == 5 and manifest.report.duplicates == 1
    lookup = urllib.request.Request(f"http://127.0.0.1:{orthanc.http_port}/tools/lookup", data=study.uid.encode(),
                                    method="POST")
    with urllib.request.urlopen(lookup, timeout=10) as response:
        (found,) = json.loads(response.read())
    archive_url = f"http://127.0.0.1:{orthanc.http_port}/studies/{found['ID']}/archive"
    with urllib.request.urlopen(f"http://127.0.0.1:{orthanc.http_port}/studies/{found['ID']}/instances",
                                timeout=10) as response:
        first_instance = json.loads(response.read())[0]["ID"]
    png = f"http://127.0.0.1:{orthanc.http_port}/instances/{first_instance}/preview"
    from_zip, image = runner.run(f"$dicom:get -z {archive_url} $image:get -u {png}")
    assert len(from_zip.report.instances) == 15 and from_zip.ok
    assert [r.format for r in image.report.images] == ["png"] and image.ok


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["wado-uri", "dicom-web"])
def test_close_during_a_running_download_stops_it(archive: Any, tmp_path: Path, kind: str,
                                                  monkeypatch: pytest.MonkeyPatch, isolated_cache: Path) -> None:
    """A WADO-URI manifest (jobs made up front), or a DICOMweb one naming the study alone (listed
    with QIDO-RS by dicomnb.retrieve): the close stops its downloads and forgets them."""
    orthanc, study = archive
    file_items = dicomnb.downloads.file_items

    def slowly(items: list[Any]) -> object:  # each instance lands in 0.1 s: the close comes mid-way
        time.sleep(0.1)
        return file_items(items)

    monkeypatch.setattr(dicomnb.downloads, "file_items", slowly)
    monkeypatch.setattr(dicomnb.downloads, "instance_parallel", 1)
    path = tmp_path / "manifest.xml"
    if kind == "wado-uri":
        path.write_text(study.xml(orthanc.wado_url))
    else:
        path.write_text(study.xml(orthanc.dicomweb_url, series=[]).replace('arcId="orthanc"', 'queryMode="DICOM_WEB"'))
    got: list[runner.CommandResult] = []
    worker = threading.Thread(target=lambda: got.extend(runner.run(f"$dicom:get -w {path}")))
    worker.start()
    deadline = time.monotonic() + 20
    while not len(dicomnb.catalog) and time.monotonic() < deadline:
        time.sleep(0.01)
    (closed,) = runner.run(f"$dicom:close -y {study.uid}")
    worker.join(20)
    assert not worker.is_alive()
    (result,) = got
    assert result.cancelled and sorted(closed.stopped) == sorted(result.jobs) and len(result.jobs) == 3
    assert dicomnb.downloads() == []  # stopped and forgotten
    assert len(dicomnb.catalog) == 0 and 0 < len(closed.closed) < 15
    store = sorted((isolated_cache / "store").rglob("*.dcm"))
    assert len(store) < 15
    time.sleep(0.5)
    assert sorted((isolated_cache / "store").rglob("*.dcm")) == store and len(dicomnb.catalog) == 0
