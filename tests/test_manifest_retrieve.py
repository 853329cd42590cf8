"""Retrieving Weasis manifests and ``$dicom:rs`` through the download manager (dicomnb.manifests).

Against an Orthanc of this module's own, holding one CT study (3 series of 5 instances), and a
scripted WADO-URI server (a thread on 127.0.0.1) that records what it is asked and answers with
the same files, for what Orthanc cannot show: the headers and parameters received, redirects,
a gzipped manifest by URL, an instance that is missing and then comes back.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pydicom
import pytest

import dicomnb
from dicomnb import manifests
from dicomnb import rs as rs_module
from dicomnb.commands import parse_commands
from dicomnb.core.errors import ConnectionFailed, ManifestError, RetrieveIncomplete
from dicomnb.core.manifest import parse_manifest
from dicomnb.core.store import instance_path

NS = "http://www.weasis.org/xsd/2.5"


@dataclass(frozen=True)
class Study:
    """The CT study: its UID, patient, files by SOP Instance UID, and series → [(SOP, number)]."""

    uid: str
    patient_id: str
    files: dict[str, Path]
    series: dict[str, list[tuple[str, int]]]

    def xml(self, base_url: str, *, arc: str = 'arcId="orthanc"', head: str = "", series: list[str] | None = None,
            instances: bool = True, study: bool = True, attrs: str = "") -> str:
        """A manifest listing the study (or some series; without instances; or the patient alone)."""
        body = ""
        for number, (uid, items) in enumerate(self.series.items(), start=1):
            if series is not None and uid not in series:
                continue
            listed = "".join(f'<Instance SOPInstanceUID="{sop}" InstanceNumber="{n}"/>' for sop, n in items)
            body += (f'<Series SeriesInstanceUID="{uid}" Modality="CT" SeriesNumber="{number}" {attrs}>'
                     f'{listed if instances else ""}</Series>')
        inner = f'<Study StudyInstanceUID="{self.uid}">{body}</Study>' if study else ""
        return (f'<manifest xmlns="{NS}"><arcQuery {arc} baseUrl="{base_url}">{head}'
                f'<Patient PatientID="{self.patient_id}">{inner}</Patient></arcQuery></manifest>')


def ct_study(folder: Path, series: int = 3, per_series: int = 5) -> Study:
    import peers

    uid, files = peers.write_ct_study(folder, series=series, per_series=per_series)
    by_series: dict[str, list[tuple[str, int]]] = {}
    patient = ""
    for sop, path in files.items():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        by_series.setdefault(str(ds.SeriesInstanceUID), []).append((sop, int(ds.InstanceNumber)))
        patient = str(ds.PatientID)
    return Study(uid, patient, files, by_series)


@contextlib.contextmanager
def ct_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Study]]:
    """An Orthanc of its own holding :func:`ct_study` (and nothing else), stopped by PID at the end."""
    import peers
    from conftest import require_module, require_tool

    require_tool("Orthanc")
    require_module("pynetdicom")
    study = ct_study(tmp_path_factory.mktemp("manifest-study"))
    with peers.run_orthanc(tmp_path_factory.mktemp("manifest-orthanc"), load=False) as orthanc:
        assert peers.orthanc_upload(orthanc.http_port, list(study.files.values())) == {}
        yield orthanc, study


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Study]]:
    with ct_archive(tmp_path_factory) as found:
        yield found


def assert_in_store(study: Study, records: list[Any], count: int) -> None:
    """``count`` records, each the original file byte for byte at its place in the store, and in the catalog."""
    assert len(records) == count
    for record in records:
        path = instance_path(study.uid, record.SeriesInstanceUID, record.SOPInstanceUID)
        assert Path(record.path) == path and path.read_bytes() == study.files[record.SOPInstanceUID].read_bytes()
        assert dicomnb.catalog.get(record.SOPInstanceUID) == record


# --- a scripted WADO-URI server ------------------------------------------------------------------------

@dataclass
class Scripted:
    """What the scripted server serves and what it was asked."""

    files: dict[str, Path]
    manifest: bytes = b""
    missing: set[str] = field(default_factory=set)
    delay: float = 0.0
    requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def scripted_server(files: dict[str, Path]) -> Iterator[Scripted]:
    state = Scripted(dict(files))

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def send(self, status: int, body: bytes = b"", kind: str = "application/dicom", **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            parts = urlsplit(self.path)
            query = parse_qs(parts.query, keep_blank_values=True)
            state.requests.append((parts.path, query, dict(self.headers.items())))
            time.sleep(state.delay)
            if parts.path == "/go":
                self.send(302, Location="/manifest.bin")
            elif parts.path == "/manifest.bin":
                self.send(200, state.manifest, "application/octet-stream")
            elif parts.path.startswith("/files/"):
                sop = parts.path.rsplit("/", 1)[1]
                self.send(200, state.files[sop].read_bytes()) if sop in state.files else self.send(404)
            elif parts.path == "/wado":
                sop = query.get("objectUID", [""])[0]
                if sop in state.files and sop not in state.missing:
                    self.send(200, state.files[sop].read_bytes())
                else:
                    self.send(404, b"not here", "text/plain")
            else:
                self.send(404, b"", "text/plain")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def small_study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    """Two series of three CT instances, on disk only (for the scripted server)."""
    return ct_study(tmp_path_factory.mktemp("scripted-study"), series=2, per_series=3)


# --- WADO-URI manifests -------------------------------------------------------------------------------------

@pytest.mark.integration
def test_a_wado_uri_manifest_retrieves_every_instance_through_the_download_manager(archive: Any) -> None:
    orthanc, study = archive
    head = ('<httpTag key="X-Archive-Token" value="t0k3n"/>'
            '<Message title="Partial result" description="all there" severity="INFO"/>')
    xml = study.xml(orthanc.wado_url, head=head).replace(
        f'baseUrl="{orthanc.wado_url}"', f'baseUrl="{orthanc.wado_url}" additionalParameters="&amp;session=42"')
    seen: list[tuple[int, int]] = []
    result = manifests.retrieve_manifest(xml.encode(), progress=lambda done, total: seen.append((done, total)))
    assert result.complete and result.retrieved == result.expected == 15 and not result.cancelled
    assert [(m.title, m.severity.value) for m in result.messages] == [("Partial result", "INFO")]
    assert_in_store(study, result.instances, 15)
    assert seen[-1] == (15, 15)
    assert {r.source for r in result.instances} == {"wado-uri"} and {r.origin for r in result.instances} == {
        "manifest:orthanc"}
    jobs = {s.id: s for s in dicomnb.downloads()}
    assert sorted(jobs) == sorted(result.jobs) and len(jobs) == 3
    assert all(s.state == "complete" and s.total == 5 and s.method == "wado-uri" for s in jobs.values())
    assert len(dicomnb.catalog.instances) == 15
    # again: everything is in the store, nothing is fetched
    again = manifests.retrieve_manifest(xml.encode())
    assert again.retrieved == 0 and len(again.instances) == 15 and "15 already in the store" in again.message
    assert again.to_json()["messages"] == [{"title": "Partial result", "description": "all there",
                                           "severity": "INFO"}]


@pytest.mark.integration
def test_manifest_by_url_redirected_and_gzipped_sends_headers_and_parameters(small_study: Study) -> None:
    series = list(small_study.series)
    with scripted_server(small_study.files) as server:
        xml = small_study.xml(f"{server.url}/wado", head='<httpTag key="X-Token" value="abc"/>',
                              attrs='WadoTransferSyntaxUID="1.2.840.10008.1.2.1"')
        # the first series' last instance comes from DirectDownloadFile instead
        sop = small_study.series[series[0]][-1][0]
        xml = xml.replace(f'SOPInstanceUID="{sop}"', f'SOPInstanceUID="{sop}" DirectDownloadFile="{server.url}/files/{sop}"')
        xml = xml.replace('arcId="orthanc"', 'arcId="s" additionnalParameters="&amp;session=7"')
        server.manifest = gzip.compress(xml.encode())
        result = manifests.retrieve_manifest(f"{server.url}/go")
        assert result.retrieved == 6 and result.complete
        assert_in_store(small_study, result.instances, 6)
        asked = [(path, query, headers) for path, query, headers in server.requests if path in ("/wado", "/files/" + sop)]
    assert len(asked) == 6
    for path, query, headers in asked:
        assert headers["X-Token"] == "abc" and query["session"] == ["7"]
        if path == "/wado":
            assert query["requestType"] == ["WADO"] and query["contentType"] == ["application/dicom"]
            assert query["transferSyntax"] == ["1.2.840.10008.1.2.1"] and query["studyUID"] == [small_study.uid]


@pytest.mark.integration
def test_pause_resume_and_retry_missing_reach_a_manifests_jobs(small_study: Study) -> None:
    with scripted_server(small_study.files) as server:
        server.delay = 0.05
        cancel = threading.Event()
        dicomnb.downloads.instance_parallel = 1
        try:
            paused = manifests.retrieve_manifest(small_study.xml(f"{server.url}/wado").encode(), cancel=cancel,
                                                 progress=lambda done, total: cancel.set())
        finally:
            dicomnb.downloads.instance_parallel = 4
        assert paused.cancelled and 0 < len(paused.instances) < 6 and paused.missing
        assert {s.state for s in dicomnb.downloads()} <= {"paused", "complete"}
        dicomnb.downloads.resume(paused.jobs)  # in this process: the jobs still have their URLs
        assert dicomnb.downloads.wait(timeout=30)
        assert {s.state for s in dicomnb.downloads()} == {"complete"} and len(dicomnb.catalog) == 6
        # an instance the archive does not have (HTTP 404), then has
        lost = small_study.series[list(small_study.series)[1]][0][0]
        for record in list(dicomnb.catalog.records()):
            Path(record.path).unlink()
        dicomnb.catalog.clear()
        server.missing.add(lost)
        with pytest.raises(RetrieveIncomplete) as caught:
            manifests.retrieve_manifest(small_study.xml(f"{server.url}/wado").encode())
        assert caught.value.missing == (lost,) and len(caught.value.result.instances) == 5
        server.missing.clear()
        retried = dicomnb.downloads.retry_missing()
        assert [job.series_uid for job in retried] == [list(small_study.series)[1]]
        dicomnb.downloads.wait(retried, timeout=30)
        assert lost in dicomnb.catalog and len(dicomnb.catalog) == 6


# --- DICOMweb manifests --------------------------------------------------------------------------------------

def dicom_web(xml: str) -> str:
    return xml.replace('arcId="orthanc"', 'arcId="web" queryMode="DICOM_WEB"')


@pytest.mark.integration
def test_a_partial_dicom_web_manifest_is_completed_with_qido(archive: Any) -> None:
    orthanc, study = archive
    head = '<httpTag key="Authorization" value="Bearer not-checked"/>'
    # the study alone: its series and instances are listed with QIDO-RS
    whole = manifests.retrieve_manifest(dicom_web(study.xml(orthanc.dicomweb_url, head=head, series=[])).encode())
    assert parse_manifest(dicom_web(study.xml(orthanc.dicomweb_url, series=[]))).partial()[0].level == "STUDY"
    assert whole.complete and whole.retrieved == whole.expected == 15
    assert_in_store(study, whole.instances, 15)
    assert {r.source for r in whole.instances} == {"dicomweb"} and len(whole.jobs) == 3
    # a series without instances (listed), a series with two of its instances (fetched as given)
    for record in whole.instances:
        Path(record.path).unlink()
    dicomnb.catalog.clear()
    first, second = list(study.series)[:2]
    listed = "".join(f'<Instance SOPInstanceUID="{sop}" InstanceNumber="{n}"/>' for sop, n in study.series[second][:2])
    xml = (f'<manifest xmlns="{NS}"><arcQuery arcId="web" queryMode="DICOM_WEB" baseUrl="{orthanc.dicomweb_url}">'
           f'<Patient PatientID="{study.patient_id}"><Study StudyInstanceUID="{study.uid}">'
           f'<Series SeriesInstanceUID="{first}"/><Series SeriesInstanceUID="{second}">{listed}</Series>'
           "</Study></Patient></arcQuery></manifest>")
    manifest = parse_manifest(xml)
    assert [(p.level, p.series_instance_uid) for p in manifest.partial()] == [("SERIES", first)]
    assert manifest.instance_count() == 2
    some = manifests.retrieve_manifest(manifest)
    assert some.complete and some.retrieved == 7
    assert {r.SeriesInstanceUID for r in some.instances} == {first, second}
    assert_in_store(study, some.instances, 7)
    # a patient without studies: its studies are found by PatientID
    for record in some.instances:
        Path(record.path).unlink()
    dicomnb.catalog.clear()
    patient = manifests.retrieve_manifest(dicom_web(study.xml(orthanc.dicomweb_url, study=False)).encode())
    assert patient.retrieved == 15 and patient.complete
    assert manifests.studies_of_patient(study.patient_id) >= {study.uid}


@pytest.mark.integration
def test_rs_finds_with_qido_and_retrieves_with_wado_rs(archive: Any) -> None:
    orthanc, study = archive
    first = list(study.series)[0]
    sop = study.series[first][0][0]
    url = orthanc.dicomweb_url

    def rs(request: str, extra: str = "") -> manifests.ManifestResult:
        (command,) = parse_commands(f"$dicom:rs -u {url} -r '{request}' {extra}")
        return rs_module.retrieve_rs(command)

    one = rs(f"objectUID={sop}", "--query-header 'X-Q: 1' --retrieve-header 'X-R: 2' -H 'X-All: 3'")
    assert one.retrieved == 1 and [r.SOPInstanceUID for r in one.instances] == [sop]
    (job,) = [dicomnb.downloads.get(job_id) for job_id in one.jobs]
    assert dict(job.runtime["node"].headers) == {"x-r": "2", "x-all": "3"}  # WADO-RS: no query header
    assert "x-r" not in repr(job.runtime["node"]) and job.node == f"rs:127.0.0.1:{orthanc.http_port}"
    series = rs(f"seriesUID={first}")
    assert series.retrieved == 4 and {r.SeriesInstanceUID for r in series.instances} == {first}
    whole = rs(f"studyUID={study.uid}")
    assert whole.retrieved == 10 and len(whole.instances) == 15 and whole.complete
    assert_in_store(study, whole.instances, 15)
    by_patient = rs(f"patientID={study.patient_id}&mostRecentResults=1")
    assert len(by_patient.instances) == 15 and by_patient.retrieved == 0
    nothing = rs("patientID=nobody-here")
    assert nothing.expected == 0 and [m.title for m in nothing.messages] == ["Nothing found"]


def portal(xml: str, study: Study, tags: str) -> str:
    """``xml`` as a portal writes it: its own PatientID, name and study description, and the tags
    (``overrideDicomTagsList``) whose values it wants shown in place of the files'."""
    return (xml.replace(" baseUrl=", f' overrideDicomTagsList="{tags}" baseUrl=', 1)
            .replace(f'<Patient PatientID="{study.patient_id}">', '<Patient PatientID="PORTAL-7" PatientName="Portal^Pat">')
            .replace(f'<Study StudyInstanceUID="{study.uid}">',
                     f'<Study StudyInstanceUID="{study.uid}" StudyDescription="From the portal">'))


@pytest.mark.integration
def test_override_dicom_tags_list_shows_the_manifests_values_and_keeps_the_files(archive: Any) -> None:
    orthanc, study = archive
    # PatientName, PatientID, StudyDescription; StudyInstanceUID is never overridden; the manifest
    # has no Modality at the study or patient level: the files' stays
    tags = "0x00100010,0x00100020,0x00081030,0x0020000D,0x00080060"
    files = {sop: pydicom.dcmread(path, stop_before_pixels=True) for sop, path in study.files.items()}
    result = manifests.retrieve_manifest(portal(study.xml(orthanc.wado_url), study, tags).encode())
    assert result.complete and result.retrieved == 15
    assert_in_store(study, result.instances, 15)  # the store holds the archive's bytes, untouched
    for record in result.instances:
        original = files[record.SOPInstanceUID]
        assert (record.PatientID, record.PatientName, record.StudyDescription) == (
            "PORTAL-7", "Portal^Pat", "From the portal")
        assert record.StudyInstanceUID == study.uid and record.Modality == original.Modality == "CT"
        assert record.StudyDate == original.StudyDate  # not listed: the file's value
        assert dict(record.overrides) == {"PatientName": "Portal^Pat", "PatientID": "PORTAL-7",
                                          "StudyDescription": "From the portal"}
    assert dicomnb.catalog.patients[["PatientID", "PatientName"]].values.tolist() == [["PORTAL-7", "Portal^Pat"]]
    assert dicomnb.catalog.studies["StudyDescription"].tolist() == ["From the portal"]
    # what is read through the catalog shows them too (viewers, headers); the file does not
    sop = result.instances[0].SOPInstanceUID
    shown = dicomnb.catalog.dataset(sop)
    assert (str(shown.PatientName), shown.PatientID, shown.StudyDescription) == (
        "Portal^Pat", "PORTAL-7", "From the portal")
    assert pydicom.dcmread(result.instances[0].path).PatientID == files[sop].PatientID != "PORTAL-7"
    assert {tuple(r["overrides"].items()) for r in dicomnb.ImportReport(instances=result.instances).to_json()[
        "instances"]} == {(("PatientName", "Portal^Pat"), ("PatientID", "PORTAL-7"),
                           ("StudyDescription", "From the portal"))}
    # a DICOMweb manifest stopping at the study (completed with QIDO-RS) applies them too; the
    # instances are in the store and the catalog already: the catalog's records take the values
    dicomnb.catalog.clear()
    manifests.retrieve_manifest(study.xml(orthanc.wado_url).encode())  # the files' own values first
    assert dicomnb.catalog.patients["PatientID"].tolist() == [study.patient_id]
    web = manifests.retrieve_manifest(
        portal(dicom_web(study.xml(orthanc.dicomweb_url, series=[])), study, "0x00100020,0x00081030").encode())
    assert web.complete and len(web.instances) == 15 and web.retrieved == 0
    assert {(r.PatientID, r.StudyDescription, r.PatientName) for r in dicomnb.catalog.records()} == {
        ("PORTAL-7", "From the portal", str(files[sop].PatientName))}


# --- typed errors ----------------------------------------------------------------------------------------------

@pytest.mark.integration
def test_an_unreachable_base_url_is_connection_failed_naming_it(small_study: Study) -> None:
    import peers

    port = peers.free_port()
    base = f"http://127.0.0.1:{port}/wado"
    with pytest.raises(ConnectionFailed, match=rf"manifest:orthanc \({base}\): connection refused"):
        manifests.retrieve_manifest(small_study.xml(base + "?secret=1").encode())
    failed = [s for s in dicomnb.downloads() if s.state == "incomplete"]
    assert failed and all(s.node == "manifest:orthanc" for s in failed)
    with pytest.raises(ConnectionFailed, match=rf"127.0.0.1:{port}/dicom-web"):
        manifests.retrieve_manifest(dicom_web(small_study.xml(f"http://127.0.0.1:{port}/dicom-web",
                                                              series=[])).encode())
    with pytest.raises(ConnectionFailed, match=rf"http://127.0.0.1:{port}/manifest.xml: connection refused"):
        manifests.retrieve_manifest(f"http://127.0.0.1:{port}/manifest.xml")


def test_a_bad_schema_or_an_unknown_version_is_manifest_error(small_study: Study) -> None:
    xml = small_study.xml("http://127.0.0.1:9/wado")
    with pytest.raises(ManifestError, match="version 2.4"):
        manifests.retrieve_manifest(xml.replace("/xsd/2.5", "/xsd/2.4").encode())
    with pytest.raises(ManifestError, match="has no StudyInstanceUID"):
        manifests.retrieve_manifest(xml.replace("StudyInstanceUID=", "StudyUID=").encode())
    with pytest.raises(ManifestError, match="cannot read the manifest"):
        manifests.retrieve_manifest("/no/such/manifest.xml")
    assert dicomnb.downloads() == []  # nothing was started


def test_a_manifest_with_only_a_message_retrieves_nothing_and_says_it(caplog: pytest.LogCaptureFixture) -> None:
    xml = f'<manifest xmlns="{NS}"><arcQuery><Message title="No study" description="nothing found" severity="ERROR"/></arcQuery></manifest>'
    data = base64.b64encode(gzip.compress(xml.encode())).decode()
    from dicomnb.core.manifest import parse_inline_manifest

    with caplog.at_level("WARNING", logger="dicomnb.manifests"):
        result = manifests.retrieve_manifest(parse_inline_manifest(data))
    assert result.expected == 0 and result.instances == [] and [m.title for m in result.messages] == ["No study"]
    assert "No study: nothing found" in caplog.text


def test_a_stopped_manifest_names_the_series_not_listed_yet() -> None:
    """Like a retrieve's, its message says which series a resume still has to list."""
    result = manifests.ManifestResult(cancelled=True, expected=6, seconds=1.5,
                                      missing=tuple(f"1.2.{n}" for n in range(6)), unlisted=("1.3.1",))
    assert result.message == ("stopped: 0 instances retrieved in 1.5 s; 6 of 6 missing: retry them with "
                              "dicomnb.downloads.retry_missing(); 1 series not listed yet: "
                              "dicomnb.downloads.resume() lists and fetches it")
    assert not result.complete


def test_a_manifests_job_resumed_in_another_process_says_to_run_it_again(isolated_cache: Path) -> None:
    """Its archive's address and headers stayed in the process that read the manifest: another
    process cannot reach it, and says what to do rather than naming an unknown node."""
    from dicomnb.core.retrieval import Expected

    instances = [Expected("1.2", "1.2.3", f"1.2.3.{n}", "1.2.840.10008.5.1.4.1.1.2") for n in range(2)]
    job = dicomnb.downloads.add(node="manifest:1001", method="wado-uri", study_uid="1.2", series_uid="1.2.3",
                                instances=instances, description="CT 1")
    elsewhere = dicomnb.downloads.__class__()  # a new process's view: the job as saved, nothing in memory
    assert [j.id for j in elsewhere.resume([job.id])] == [job.id]
    assert elsewhere.wait(timeout=30)
    (status,) = elsewhere()
    assert status.state == "incomplete" and status.missing == 2
    assert "manifest:1001 is an archive a manifest or a $dicom:rs command named in another process" in status.error
    assert "run that manifest or command again" in status.error
