"""DICOMweb (QIDO-RS search, WADO-RS retrieve) against real Orthancs and scripted web servers."""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import TEST_FILES, require_module, require_tool
from netcommon import CT_INSTANCE, CT_SERIES, CT_STUDY, collect_garbage  # noqa: F401 - collect_garbage: autouse fixture

import dicomnb
from dicomnb.core.criteria import SearchCriteria
from dicomnb.core.errors import (
    AuthenticationFailed,
    ConfigError,
    ConnectionFailed,
    MalformedResponse,
    QueryFailed,
    RetrieveIncomplete,
)
from dicomnb.core.nodes import DicomWebNode, NodeStore
from dicomnb.core.query import FindOutcome
from dicomnb.core.retrieval import Expected, Landing, expected_instances
from dicomnb.core.secrets import forget_secret, set_secret
from dicomnb.core.store import instance_path
from dicomnb.sources import dicomweb, wado_rs
from dicomnb.sources.http import HttpClient

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
PASSWORD = "s3cret-" + secrets.token_hex(4)


def loaded_studies() -> dict[str, set[str]]:
    """StudyInstanceUID → SOP Instance UIDs of the files the suite's Orthanc was loaded with."""
    import peers

    studies: dict[str, set[str]] = defaultdict(set)
    for path in peers.dataset_files():
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID", "SOPInstanceUID"])
        studies[str(ds.StudyInstanceUID)].add(str(ds.SOPInstanceUID))
    return dict(studies)


def node_of(peer: Any, **changes: Any) -> DicomWebNode:
    values: dict[str, Any] = {"name": f"{peer.name}-web", "url": peer.dicomweb_url}
    values.update(changes)
    return DicomWebNode(**values)


def run(stream: Any) -> tuple[list[dict[str, Any]], FindOutcome]:
    """Every row of a search, and how it ended."""
    rows: list[dict[str, Any]] = []
    while True:
        try:
            rows.append(next(stream))
        except StopIteration as stop:
            return rows, stop.value


def ids(node: DicomWebNode, **fields: Any) -> list[str]:
    rows, _ = run(dicomweb.search(node, SearchCriteria(**fields)))
    return sorted(str(row.get("PatientID") or "") for row in rows)


def landing_for(rows: list[dict[str, Any]], study: str, origin: str = "web") -> Landing:
    return Landing(expected_instances(rows, study), dicomnb.catalog.add_items, source="dicomweb", origin=origin)


def store_files(root: Path) -> list[Path]:
    return [p for p in (root / "store").rglob("*") if p.is_file()]


def orthanc_file(http_port: int, sop: str, headers: dict[str, str] | None = None) -> bytes:
    """The file Orthanc holds for an instance (REST, not DICOMweb)."""
    lookup = urllib.request.Request(f"http://127.0.0.1:{http_port}/tools/lookup", data=sop.encode(),
                                    method="POST", headers=headers or {})
    with urllib.request.urlopen(lookup, timeout=10) as response:
        (found,) = json.loads(response.read())
    request = urllib.request.Request(f"http://127.0.0.1:{http_port}/instances/{found['ID']}/file",
                                     headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())


@pytest.fixture
def web(orthanc: Any) -> DicomWebNode:
    return node_of(orthanc)


# --- A web server of the test's own -------------------------------------------------------------

class ScriptedHttp:
    """An HTTP/1.1 server on 127.0.0.1:0 whose ``script(handler, release)`` answers every GET.

    It records each request's path and headers. Scripts that wait use ``release``, set when
    the server stops, so no thread outlives the test.
    """

    def __init__(self, script: Callable[[BaseHTTPRequestHandler, threading.Event], None]) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                outer.requests.append((self.path, dict(self.headers)))
                script(self, outer.release)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/dicom-web"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def node(self, **changes: Any) -> DicomWebNode:
        return DicomWebNode(**{"name": "scripted", "url": self.url, **changes})

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedHttp]]:
    made: list[ScriptedHttp] = []

    def make(script: Callable[[BaseHTTPRequestHandler, threading.Event], None]) -> ScriptedHttp:
        made.append(ScriptedHttp(script))
        return made[-1]

    yield make
    for server in made:
        server.close()


def answer(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", content_type: str = "application/json",
           length: int | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body) if length is None else length))
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


def multipart(files: list[bytes], boundary: str = "test-boundary") -> bytes:
    parts = [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n" for data in files]
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


MULTIPART = 'multipart/related; type="application/dicom"; boundary=test-boundary'


# --- No network: query parameters, landing a streamed file ---------------------------------------

def test_query_parameters_are_written_for_orthanc_and_the_standard() -> None:
    path, params, exact = dicomweb.qido_query(SearchCriteria(
        patient_name="Doe^J*", patient_id="A?1", modalities=("CT", "MR"), date_from="2004-01-01",
        date_to="2004-12-31", study_description="Chest CT", referring_physician_name="Люк*ce"))
    sent = dict(p for p in params if p[0] != "includefield")
    assert path == "/studies"
    # wildcards and ^ literally (Orthanc 1.10 does not decode %2A, %5E); lists comma-separated
    assert sent["PatientName"] == "Doe^J*" and sent["PatientID"] == "A*1"  # and ? checked here
    assert sent["ModalitiesInStudy"] == "CT,MR" and sent["StudyDate"] == "20040101-20041231"
    # what would need percent-encoding becomes a wildcard, and is checked here exactly
    assert sent["StudyDescription"] == "Chest?CT" and sent["ReferringPhysicianName"] == "*ce"
    assert exact == {"PatientID": "A?1", "StudyDescription": "Chest CT", "ReferringPhysicianName": "Люк*ce"}
    fields = [v for k, v in params if k == "includefield"]
    assert "NumberOfStudyRelatedInstances" in fields
    assert "SpecificCharacterSet" not in fields  # it breaks Orthanc 1.10 (see dicomweb's docstring)
    assert all(v.isascii() and "%" not in v for _, v in params)
    # nothing left but "*": not sent, asked back and checked here
    _, params, exact = dicomweb.qido_query(SearchCriteria(patient_name="김희중*"))
    assert "PatientName" not in dict(params) and ("includefield", "PatientName") in params
    assert exact == {"PatientName": "김희중*"}
    # below STUDY level the UIDs go in the path
    path, params, _ = dicomweb.qido_query(SearchCriteria(modalities=("CT",)), "series", study_uid="1.2.3")
    assert path == "/studies/1.2.3/series" and ("Modality", "CT") in params
    assert dicomweb.qido_query(None, "image", study_uid="1.2", series_uid="1.2.3")[0] == \
        "/studies/1.2/series/1.2.3/instances"
    assert dicomweb.qido_query(None, "image", study_uid="1.2")[0] == "/studies/1.2/instances"
    assert ("StudyInstanceUID", "1.2,1.3") in dicomweb.qido_query(SearchCriteria(study_instance_uid="1.2\\1.3"))[1]


def test_json_datasets_arrive_whole_whatever_the_pieces() -> None:
    from dicomnb.sources import dicomjson

    items = [{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Люкceмбypг", "Ideographic": "王^小東"}]},
              "00201208": {"vr": "IS", "Value": [12]}, "00280030": {"vr": "DS", "Value": [0.5, 0.5]},
              "00080061": {"vr": "CS", "Value": ["CT"]}, "00081190": {"vr": "UR", "Value": ["http://x"]},
              "00400275": {"vr": "SQ", "Value": [{"00400009": {"vr": "SH", "Value": ["SPS1"]}}]},
              "7FE00010": {"vr": "OW", "BulkDataURI": "http://x/bulk"}, "00080005": {"vr": "CS", "Value": ["ISO_IR 100"]},
              "00090010": {"vr": "LO", "Value": ["private"]}},
             {"00100020": {"vr": "LO", "Value": ["x" * 200_000]}}]
    body = (" [ " + " , ".join(json.dumps(item) for item in items) + " ] ").encode()
    for size in (1, 7, 4096, len(body)):
        chunks = iter([body[i:i + size] for i in range(0, len(body), size)] + [b""])
        assert list(dicomjson.datasets(lambda n, chunks=chunks: next(chunks), "here")) == items
    row = dicomjson.row(items[0])
    assert row == {"PatientName": "Люкceмбypг=王^小東", "NumberOfStudyRelatedInstances": 12,
                   "PixelSpacing": [0.5, 0.5], "ModalitiesInStudy": ["CT"], "RetrieveURL": "http://x",
                   "RequestAttributesSequence": [{"ScheduledProcedureStepID": "SPS1"}], "PixelData": None}
    assert dicomjson.charsets(items[0]) == ["ISO_IR 100"] and dicomjson.charsets(items[1]) is None


def test_land_file_checks_renames_or_deletes(isolated_cache: Path) -> None:
    data = (TEST_FILES / "CT_small.dcm").read_bytes()
    landing = Landing([Expected(CT_STUDY, CT_SERIES, CT_INSTANCE, CT_IMAGE)], dicomnb.catalog.add_items,
                      source="dicomweb", origin="here")
    folder = instance_path(CT_STUDY, CT_SERIES, CT_INSTANCE).parent
    folder.mkdir(parents=True)

    def temporary(content: bytes) -> Path:
        path = folder / f".part-{secrets.token_hex(4)}"
        path.write_bytes(content)
        return path

    assert landing.land_file(temporary(b"not DICOM" * 100), sender="X") == 0xC000
    assert landing.land_file(temporary((TEST_FILES / "MR_small.dcm").read_bytes()), sender="X") == 0x0124
    assert landing.missing == (CT_INSTANCE,) and list(folder.iterdir()) == []
    assert landing.land_file(temporary(data), sender="X") == 0x0000
    assert landing.land_file(temporary(data), sender="X") == 0x0000  # twice: the first copy stands
    stored = instance_path(CT_STUDY, CT_SERIES, CT_INSTANCE)
    assert list(folder.iterdir()) == [stored] and stored.read_bytes() == data
    assert landing.records[CT_INSTANCE].path == str(stored) and CT_INSTANCE in dicomnb.catalog
    result = landing.result("here", CT_STUDY, "wado-rs")
    assert result.retrieved == 1 and "a part from X is not usable" in result.errors[0]
    assert "not asked for" in result.errors[1]


# --- Search, on the suite's Orthanc ----------------------------------------------------------------

@pytest.mark.integration
def test_echo(web: DicomWebNode) -> None:
    assert 0 < dicomweb.echo(web) < 5


@pytest.mark.integration
def test_search_with_every_criterion(web: DicomWebNode) -> None:
    assert ids(web, patient_name="Comp*") == ["1CT1", "4MR1"]
    assert ids(web, patient_name="CompressedSamples^CT?") == ["1CT1"]
    assert ids(web, patient_name="CompressedSamples^CT") == []
    assert ids(web, patient_name="Test^S R") == [""]  # a space: widened to ?, checked exactly
    assert ids(web, patient_id="1CT1") == ["1CT1"] and ids(web, patient_id="1CT") == []
    assert ids(web, accession_number="03086212") == ["99000"]
    assert ids(web, accession_number="0302*") == ["642341"]
    assert ids(web, study_id="study1") == ["id00001"]
    assert ids(web, study_description="abdomen^liver") == ["021234567"]
    assert ids(web, study_description="OFFIS Structured*") == [""]
    assert ids(web, study_description="OFFIS  Structured*") == []
    assert ids(web, study_instance_uid=CT_STUDY) == ["1CT1"]
    assert ids(web, referring_physician_name="Mori*") == ["ID1"]
    assert ids(web, modalities=("CT",)) == ["1CT1"]
    assert ids(web, modalities=("OT", "CR")) == sorted(
        ["ID1", "SCSRUSS", "2008-3", "SCSFREN", "SCSGERM", "2008-4", "X1EXAMPLE"])
    assert ids(web, date_from="2004-01-01", date_to="2004-12-31") == ["1CT1", "4MR1"]
    assert ids(web, date_from="2011-01-01") == ["11-05-25-142825", "642341", "ID1"]
    week, _ = run(dicomweb.search(web, SearchCriteria(period="last-week"), now=datetime(2004, 1, 20, 9)))
    assert [r["PatientID"] for r in week] == ["1CT1"]


@pytest.mark.integration
def test_rows_look_like_c_find_rows(web: DicomWebNode, orthanc: Any) -> None:
    from netcommon import node_of as dimse_node

    from dicomnb.sources.dimse import find

    rows, outcome = run(dicomweb.search(web, SearchCriteria()))
    assert len(rows) == len(loaded_studies()) and not outcome.limited and not outcome.cancelled
    web_ct = next(r for r in rows if r["StudyInstanceUID"] == CT_STUDY)
    dimse_ct = next(r for r in find(dimse_node(orthanc), SearchCriteria()) if r["StudyInstanceUID"] == CT_STUDY)
    for keyword in ("PatientName", "PatientID", "StudyDate", "ModalitiesInStudy", "StudyDescription",
                    "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "StudyInstanceUID"):
        assert web_ct[keyword] == dimse_ct[keyword], keyword
    assert web_ct["PatientName"] == "CompressedSamples^CT1" and web_ct["ModalitiesInStudy"] == ["CT"]
    assert web_ct["NumberOfStudyRelatedInstances"] == 1 and "SpecificCharacterSet" not in web_ct
    wang = next(r for r in rows if r["PatientID"] == "X1EXAMPLE")
    assert isinstance(wang["PatientName"], str) and wang["PatientName"].startswith("Wang^XiaoDong")


@pytest.mark.integration
def test_series_and_instances_of_a_study(web: DicomWebNode) -> None:
    (series,), _ = run(dicomweb.search(web, None, "series", study_uid=CT_STUDY))
    assert series["SeriesInstanceUID"] == CT_SERIES and series["Modality"] == "CT"
    assert series["SeriesNumber"] == 1 and series["StudyInstanceUID"] == CT_STUDY
    assert run(dicomweb.search(web, SearchCriteria(modalities=("MR",)), "series", study_uid=CT_STUDY))[0] == []
    (image,), _ = run(dicomweb.search(web, None, "image", study_uid=CT_STUDY, series_uid=CT_SERIES))
    assert image["SOPInstanceUID"] == CT_INSTANCE and image["InstanceNumber"] == 1 and image["Rows"] == 128
    assert image["SOPClassUID"] == CT_IMAGE and image["SeriesInstanceUID"] == CT_SERIES
    for study, instances in loaded_studies().items():
        rows = dicomweb.find_instances(web, study)
        assert {r["SOPInstanceUID"] for r in rows} == instances and len(rows) == len(instances)
        assert all(r["StudyInstanceUID"] == study and r["SeriesInstanceUID"] and r["SOPClassUID"] for r in rows)
    assert [r["SOPInstanceUID"] for r in dicomweb.find_instances(web, CT_STUDY, [CT_SERIES])] == [CT_INSTANCE]
    assert dicomweb.find_instances(web, CT_STUDY, ["1.2.3.4.5.6.7"]) == []


@pytest.mark.integration
def test_pages_cover_everything_once(web: DicomWebNode, monkeypatch: pytest.MonkeyPatch) -> None:
    everything = {r["StudyInstanceUID"] for r in run(dicomweb.search(web, SearchCriteria()))[0]}
    assert everything == set(loaded_studies())
    seen: list[str] = []
    page = 1
    while True:
        rows, outcome = run(dicomweb.search(web, SearchCriteria(), limit=2, offset=(page - 1) * 2))
        assert len(rows) == 2 or not outcome.limited
        seen += [r["StudyInstanceUID"] for r in rows]
        if not outcome.limited:
            break
        page += 1
    assert page == len(everything) // 2 and sorted(seen) == sorted(everything)  # no gap, no duplicate
    monkeypatch.setattr(dicomweb, "PAGE_SIZE", 3)  # limit 0: page after page until a short one
    rows, outcome = run(dicomweb.search(web, SearchCriteria()))
    assert sorted(r["StudyInstanceUID"] for r in rows) == sorted(everything) and not outcome.limited
    assert run(dicomweb.search(web, SearchCriteria(), limit=5, offset=100)) == ([], FindOutcome(0))


@pytest.mark.integration
def test_what_dicomweb_client_sends_matches_nothing_on_orthanc_1_10(web: DicomWebNode) -> None:
    require_module("dicomweb_client")
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(web.url)
    assert client.search_for_studies(search_filters={"PatientName": "Comp*"}) == []  # sent as Comp%2A
    assert ids(web, patient_name="Comp*") == ["1CT1", "4MR1"]  # sent as Comp*


@pytest.mark.integration
def test_non_ascii_names_match(web: DicomWebNode) -> None:
    rows, _ = run(dicomweb.search(web, SearchCriteria(patient_name="Люкceмбypг")))
    assert [(r["PatientID"], r["PatientName"]) for r in rows] == [("SCSRUSS", "Люкceмбypг")]
    assert ids(web, patient_name="Люк*") == ["SCSRUSS"] and ids(web, patient_name="Люкс*") == []
    # Orthanc leaves the Korean name empty in its answers: it is read from the metadata
    rows, outcome = run(dicomweb.search(web, SearchCriteria(patient_name="김희중*")))
    assert [(r["PatientID"], r["PatientName"]) for r in rows] == [("2008-3", "김희중")]
    assert "read from their instances' metadata" in outcome.notes[0]
    assert ids(web, patient_name="김희중") == ["2008-3"] and ids(web, patient_name="김*중") == ["2008-3"]
    assert ids(web, patient_name="Buc^J?r?me") == ["SCSFREN"]  # ? stands for é here
    assert ids(web, patient_name="Äneas^Rüdiger") == ["SCSGERM"]


@pytest.mark.integration
def test_cancel_between_pages(web: DicomWebNode, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dicomweb, "PAGE_SIZE", 2)
    cancel = threading.Event()
    stream = dicomweb.search(web, SearchCriteria(), cancel=cancel)
    first = next(stream)
    cancel.set()
    rows, outcome = run(stream)
    assert first["StudyInstanceUID"] and rows == [] and outcome.cancelled and outcome.matches == 1


def test_cancel_while_the_server_is_silent(scripted: Callable[..., ScriptedHttp]) -> None:
    row = json.dumps({"00100010": {"vr": "PN", "Value": [{"Alphabetic": "First^Row"}]},
                      "0020000D": {"vr": "UI", "Value": ["1.2.3"]}}).encode()

    def one_then_wait(handler: BaseHTTPRequestHandler, release: threading.Event) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/dicom+json")
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        handler.wfile.write(b"[" + row + b",")
        handler.wfile.flush()
        release.wait(30)

    server = scripted(one_then_wait)
    cancel = threading.Event()
    got: list[Any] = []
    worker = threading.Thread(target=lambda: got.append(run(dicomweb.search(server.node(), cancel=cancel,
                                                                            timeout=20))))
    worker.start()
    time.sleep(0.4)
    started = time.monotonic()
    cancel.set()
    worker.join(5)
    assert not worker.is_alive() and time.monotonic() - started < 1
    ((rows, outcome),) = got
    assert [r["PatientName"] for r in rows] == ["First^Row"] and outcome.cancelled and not outcome.limited


# --- Retrieve, from the suite's Orthanc ----------------------------------------------------------

@pytest.mark.integration
def test_retrieve_every_study_byte_for_byte(web: DicomWebNode, orthanc: Any, isolated_cache: Path) -> None:
    done: list[int] = []
    for study, instances in loaded_studies().items():
        landing = landing_for(dicomweb.find_instances(web, study), study, web.name)
        landing.progress = lambda n, total: done.append(n)
        wado_rs.retrieve_wado_rs(web, landing)
        result = landing.result(web.name, study, "wado-rs")
        assert not result.missing and {r.SOPInstanceUID for r in result.instances} == instances
        for record in result.instances:
            assert Path(record.path) == instance_path(study, record.SeriesInstanceUID or "", record.SOPInstanceUID)
            assert Path(record.path).read_bytes() == orthanc_file(orthanc.http_port, record.SOPInstanceUID)
            assert dicomnb.catalog.get(record.SOPInstanceUID) == record and record.source == "dicomweb"
    assert len(done) == len(orthanc.instances) == len(dicomnb.catalog)
    assert not [p for p in store_files(isolated_cache) if p.name.startswith(".part-")]


# --- An Orthanc of the module's own, with basic auth and a study of two series -------------------

@pytest.fixture(scope="module")
def authed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str, dict[str, Path]]]:
    """Orthanc wanting alice's password (HTTP basic), holding CT_small and 2 series × 3 CT copies."""
    require_tool("Orthanc")
    require_module("pynetdicom")
    import peers

    folder = tmp_path_factory.mktemp("authed")
    study, files = peers.write_ct_study(folder)
    users = {"alice": PASSWORD}
    with peers.run_orthanc(folder / "server", load=False, users=users) as peer:
        assert peers.orthanc_upload(peer.http_port, [TEST_FILES / "CT_small.dcm", *files.values()],
                                    peers.basic_auth(users)) == {}
        yield peer, study, files


@pytest.fixture
def alice(authed: Any, monkeypatch: pytest.MonkeyPatch) -> DicomWebNode:
    monkeypatch.setenv("DICOMNB_TEST_PASSWORD", PASSWORD)
    return node_of(authed[0], name="authed", auth="basic", user="alice", secret_env="DICOMNB_TEST_PASSWORD")


@pytest.mark.integration
def test_basic_auth(authed: Any, alice: DicomWebNode, monkeypatch: pytest.MonkeyPatch) -> None:
    peer, study, _ = authed
    assert dicomweb.echo(alice) > 0 and ids(alice) == ["1CT1", "1CT1"]
    assert len(dicomweb.find_instances(alice, study)) == 6
    monkeypatch.setenv("DICOMNB_TEST_PASSWORD", "wrong")
    for call in (lambda: dicomweb.echo(alice), lambda: ids(alice),
                 lambda: dicomweb.find_instances(alice, study)):
        with pytest.raises(AuthenticationFailed, match="HTTP 401.*check the credentials") as info:
            call()
        assert info.value.status == 401 and PASSWORD not in str(info.value)
    monkeypatch.delenv("DICOMNB_TEST_PASSWORD")
    with pytest.raises(ConfigError, match="set the environment variable DICOMNB_TEST_PASSWORD"):
        dicomweb.echo(alice)
    nameless = node_of(peer, name="authed2", auth="basic", user="alice")
    with pytest.raises(ConfigError, match=r"--secret-env VAR.*set_secret\('authed2'\)"):
        ids(nameless)
    anonymous = node_of(peer, name="anonymous")
    with pytest.raises(AuthenticationFailed, match="check the credentials"):
        dicomweb.echo(anonymous)
    set_secret("authed2", PASSWORD)
    try:
        assert ids(nameless) == ["1CT1", "1CT1"]
    finally:
        forget_secret("authed2")


@pytest.mark.integration
def test_retrieve_series_per_instance_and_resume(authed: Any, alice: DicomWebNode, isolated_cache: Path) -> None:
    peer, study, files = authed
    rows = dicomweb.find_instances(alice, study)
    landing = landing_for(rows, study)
    wado_rs.retrieve_wado_rs(alice, landing, parallel=2)  # two series, one request each
    assert landing.missing == () and landing.retrieved == 6
    for sop, record in landing.records.items():
        assert Path(record.path).read_bytes() == files[sop].read_bytes()
    # per instance, into an empty store
    for record in landing.records.values():
        os.unlink(record.path)
    dicomnb.catalog.clear()
    per_instance = landing_for(rows, study)
    wado_rs.retrieve_wado_rs(alice, per_instance, per_instance=True)
    assert per_instance.missing == () and per_instance.retrieved == 6
    # an interrupted retrieve: only the lost instance is fetched again (on its own)
    lost = next(iter(per_instance.records.values()))
    os.unlink(lost.path)
    again = landing_for(rows, study)
    assert again.file_stored() == 5
    wado_rs.retrieve_wado_rs(alice, again)
    assert again.retrieved == 1 and again.missing == () and Path(lost.path).is_file()
    assert not [p for p in store_files(isolated_cache) if p.name.startswith(".part-")]


@pytest.mark.integration
def test_dicomnb_retrieve_lists_and_retrieves_side_by_side(authed: Any, alice: DicomWebNode,
                                                           isolated_cache: Path) -> None:
    peer, study, files = authed
    result = dicomnb.retrieve(alice, study, parallel=1)
    assert result.complete and result.retrieved == result.expected == 6 and result.method == "wado-rs"
    for record in result.instances:
        assert Path(record.path).read_bytes() == files[record.SOPInstanceUID].read_bytes()
        assert record.source == "dicomweb" and record.origin == "authed"
    again = dicomnb.retrieve(alice, study)  # all in the store: listed, nothing fetched
    assert again.retrieved == 0 and len(again.instances) == 6 and "6 already in the store" in again.message
    series = str(pydicom.dcmread(next(iter(files.values())), stop_before_pixels=True).SeriesInstanceUID)
    assert {r.SeriesInstanceUID for r in dicomnb.retrieve(alice, study, [series]).instances} == {series}


@pytest.mark.integration
def test_canary_token_never_leaks(authed: Any, web: DicomWebNode, scripted: Callable[..., ScriptedHttp],
                                  caplog: pytest.LogCaptureFixture, isolated_cache: Path,
                                  isolated_config: Path) -> None:
    token = f"canary-{secrets.token_hex(8)}"
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    def refuse(handler: BaseHTTPRequestHandler, release: threading.Event) -> None:
        seen.append(handler.headers.get("Authorization", ""))
        answer(handler, 401, b'{"error": "who are you?"}')

    server = scripted(refuse)
    bearer = server.node(name="bearer", auth="bearer")
    on_orthanc = DicomWebNode(name="bearer-orthanc", url=web.url, auth="bearer")
    on_authed = node_of(authed[0], name="bearer-authed", auth="bearer")
    errors: list[BaseException] = []
    for name in ("bearer", "bearer-orthanc", "bearer-authed"):
        set_secret(name, token)
    try:
        NodeStore.load().add(bearer)
        for call in (lambda: dicomweb.echo(bearer), lambda: ids(bearer), lambda: ids(on_authed),
                     lambda: wado_rs.retrieve_wado_rs(bearer, landing_for(
                         [{"SOPInstanceUID": CT_INSTANCE, "SeriesInstanceUID": CT_SERIES}], CT_STUDY))):
            with pytest.raises(AuthenticationFailed) as info:
                call()
            errors.append(info.value)
        # Orthanc without authentication ignores the token: everything works with it
        assert dicomweb.echo(on_orthanc) > 0 and ids(on_orthanc, patient_id="1CT1") == ["1CT1"]
        landing = landing_for(dicomweb.find_instances(on_orthanc, CT_STUDY), CT_STUDY)
        wado_rs.retrieve_wado_rs(on_orthanc, landing)
        assert landing.missing == ()
        client = HttpClient(web.url, where="x", timeout=1, authorization=f"Bearer {token}")
        texts = [repr(client), repr(bearer), repr(landing.result("x", CT_STUDY, "wado-rs"))]
    finally:
        for name in ("bearer", "bearer-orthanc", "bearer-authed"):
            forget_secret(name)
    assert seen and all(value == f"Bearer {token}" for value in seen)  # it was sent ...
    for error in errors:  # ... and is nowhere else
        chain: BaseException | None = error
        while chain is not None:
            texts += [str(chain), repr(chain)]
            chain = chain.__cause__ or chain.__context__
    texts.append(caplog.text)
    assert "GET /dicom-web/studies" in caplog.text  # the log was on
    assert all(token not in text for text in texts)
    for folder in (isolated_config, isolated_cache):
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert all(token.encode() not in p.read_bytes() for p in files)
    assert (isolated_config / "nodes.json").is_file() and store_files(isolated_cache)


# --- Failures, typed: scripted servers and silence ------------------------------------------------

def ct_landing() -> Landing:
    return Landing([Expected(CT_STUDY, CT_SERIES, CT_INSTANCE, CT_IMAGE),
                    Expected(CT_STUDY, CT_SERIES, "1.2.3.4.5.6", CT_IMAGE)],
                   dicomnb.catalog.add_items, source="dicomweb", origin="scripted")


@pytest.mark.parametrize("cut_in", ["first", "second"])
def test_a_cut_multipart_body_is_malformed_and_leaves_nothing_half_written(
        scripted: Callable[..., ScriptedHttp], isolated_cache: Path, cut_in: str) -> None:
    ct = (TEST_FILES / "CT_small.dcm").read_bytes()
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6"
    other = Path(isolated_cache / "other.dcm")
    ds.save_as(other, enforce_file_format=True)
    whole = multipart([ct, other.read_bytes()])
    cut = len(whole) // 4 if cut_in == "first" else len(whole) - len(ct) // 2

    def cut_short(handler: BaseHTTPRequestHandler, release: threading.Event) -> None:
        answer(handler, 200, whole[:cut], MULTIPART, length=len(whole))
        handler.close_connection = True

    server = scripted(cut_short)
    landing = ct_landing()
    with pytest.raises(MalformedResponse, match="cut short in the middle of part") as info:
        wado_rs.retrieve_wado_rs(server.node(), landing)
    assert "try again" in str(info.value)
    assert server.requests[0][1]["Accept"] == wado_rs.ACCEPT_DICOM
    files = store_files(isolated_cache)
    assert not [p for p in files if p.name.startswith(".part-")]
    assert not instance_path(CT_STUDY, CT_SERIES, "1.2.3.4.5.6").exists()
    if cut_in == "second":  # the complete first part is kept, whole
        assert landing.missing == ("1.2.3.4.5.6",) and files == [instance_path(CT_STUDY, CT_SERIES, CT_INSTANCE)]
        assert files[0].read_bytes() == ct
    else:
        assert files == [] and len(landing.missing) == 2


def test_a_whole_multipart_body_lands_every_part(scripted: Callable[..., ScriptedHttp], isolated_cache: Path) -> None:
    ct = (TEST_FILES / "CT_small.dcm").read_bytes()

    def series(handler: BaseHTTPRequestHandler, release: threading.Event) -> None:
        answer(handler, 200, multipart([ct, b"not DICOM"]), MULTIPART)

    server = scripted(series)
    landing = ct_landing()
    wado_rs.retrieve_wado_rs(server.node(headers={"X-Tenant": "t1"}), landing)
    assert landing.missing == ("1.2.3.4.5.6",) and "a part from scripted" in landing.errors[0]
    path, headers = server.requests[0]
    assert path == f"/dicom-web/studies/{CT_STUDY}/series/{CT_SERIES}" and headers["X-Tenant"] == "t1"


@pytest.mark.parametrize(("status", "kind", "words"), [
    (500, QueryFailed, "HTTP 500 to the search: the server failed: see its log, or try again later"),
    (503, QueryFailed, "busy or down"),
    (404, QueryFailed, "is the node's URL the DICOMweb root"),
    (403, AuthenticationFailed, "check the credentials"),
])
def test_http_errors_are_typed(scripted: Callable[..., ScriptedHttp], status: int, kind: type, words: str) -> None:
    server = scripted(lambda handler, release: answer(handler, status, b"{}"))
    with pytest.raises(kind, match=words) as info:
        ids(server.node())
    assert info.value.status == status
    with pytest.raises(kind) as info:
        dicomweb.echo(server.node())
    assert info.value.status == status
    if status != 404:  # a 404 from WADO-RS leaves the series missing (below)
        with pytest.raises(kind, match="to the retrieve of series") as info:
            wado_rs.retrieve_wado_rs(server.node(), ct_landing())
        assert info.value.status == status


def test_wado_rs_404_leaves_the_series_missing(scripted: Callable[..., ScriptedHttp]) -> None:
    server = scripted(lambda handler, release: answer(handler, 404, b"{}"))
    landing = ct_landing()
    wado_rs.retrieve_wado_rs(server.node(), landing)
    assert len(landing.missing) == 2 and "not found (HTTP 404)" in landing.errors[0]


@pytest.mark.parametrize(("body", "content_type", "words"), [
    (b'{"not": "a list"}', "application/dicom+json", "not a JSON list"),
    (b'[{"00100010": {"vr": "PN"}}, {"0010', "application/dicom+json", "cut short"),
    (b"[1, 2]", "application/dicom+json", "holds a int"),
])
def test_malformed_search_answers(scripted: Callable[..., ScriptedHttp], body: bytes, content_type: str,
                                  words: str) -> None:
    server = scripted(lambda handler, release: answer(handler, 200, body, content_type))
    with pytest.raises(MalformedResponse, match=words):
        ids(server.node())


def test_not_multipart_is_malformed(scripted: Callable[..., ScriptedHttp]) -> None:
    server = scripted(lambda handler, release: answer(handler, 200, b"<html></html>", "text/html"))
    with pytest.raises(MalformedResponse, match="'text/html', not multipart/related"):
        wado_rs.retrieve_wado_rs(server.node(), ct_landing())


def test_a_silent_server_times_out(silent_peer: Any) -> None:
    node = DicomWebNode(name="silent", url=f"http://127.0.0.1:{silent_peer.port}/dicom-web")
    started = time.monotonic()
    for call in (lambda: dicomweb.echo(node, timeout=0.3), lambda: ids_with_timeout(node),
                 lambda: wado_rs.retrieve_wado_rs(node, ct_landing(), timeout=0.3)):
        with pytest.raises(ConnectionFailed, match="no answer within 0.3 s"):
            call()
    assert time.monotonic() - started < 3


def ids_with_timeout(node: DicomWebNode) -> Any:
    return run(dicomweb.search(node, timeout=0.3))


def test_refused_and_bad_parameters() -> None:
    import peers

    node = DicomWebNode(name="down", url=f"http://127.0.0.1:{peers.free_port()}/dicom-web")
    with pytest.raises(ConnectionFailed, match="connection refused"):
        dicomweb.echo(node)
    with pytest.raises(ConfigError, match="timeout"):
        dicomweb.echo(node, timeout=0)
    with pytest.raises(ConfigError, match="parallel"):
        wado_rs.retrieve_wado_rs(node, ct_landing(), parallel=0)


def test_a_kept_alive_connection_closed_by_the_server_is_reopened(scripted: Callable[..., ScriptedHttp]) -> None:
    def once_per_connection(handler: BaseHTTPRequestHandler, release: threading.Event) -> None:
        answer(handler, 200, b"[]", "application/dicom+json")
        handler.close_connection = True  # closed without saying so, as an idle timeout does

    server = scripted(once_per_connection)
    client = HttpClient(server.url, where="scripted", timeout=5)
    try:
        for _ in range(3):
            with client.get(client.target("/studies"), dicomweb.ACCEPT_JSON) as response:
                assert client.read(response) == b"[]"
            time.sleep(0.05)  # the server has closed it by now
    finally:
        client.close()
    assert len(server.requests) == 3


def test_silence_in_the_middle_of_a_series(scripted: Callable[..., ScriptedHttp], isolated_cache: Path) -> None:
    ct = (TEST_FILES / "CT_small.dcm").read_bytes()
    whole = multipart([ct])

    def stall(handler: BaseHTTPRequestHandler, release: threading.Event) -> None:
        answer(handler, 200, whole[:len(whole) // 2], MULTIPART, length=len(whole))
        release.wait(30)

    server = scripted(stall)
    with pytest.raises(ConnectionFailed, match="no answer within 0.5 s"):
        wado_rs.retrieve_wado_rs(server.node(), ct_landing(), timeout=0.5)
    assert store_files(isolated_cache) == []



# --- dicomnb.retrieve: listing and retrieving side by side, on a scripted server ------------------

def study_server(files: dict[str, Path], broken: dict[str, str] | None = None) -> Callable[..., None]:
    """The script of a DICOMweb server holding one study (``files``: SOPInstanceUID → file).

    It answers the QIDO-RS listings of the study's series and of each series' instances, and
    the WADO-RS of a series or of one instance; ``broken`` maps a SeriesInstanceUID to how the
    WADO-RS of that series fails: ``"404"`` (every request of it), or ``"cut"`` (once: the
    answer holding its second instance is cut in the middle of that instance).
    """
    cut_once: list[str] = []
    series: dict[str, dict[str, bytes]] = {}
    for sop, path in files.items():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        series.setdefault(str(ds.SeriesInstanceUID), {})[sop] = path.read_bytes()

    def uid(tag: str, value: str) -> dict[str, Any]:
        return {tag: {"vr": "UI", "Value": [value]}}

    def script(handler: BaseHTTPRequestHandler, release: threading.Event) -> None:
        parts = handler.path.split("?")[0].removeprefix("/dicom-web/").split("/")  # studies/S/series/X/...
        if parts[2:] == ["series"]:
            rows = [uid("0020000E", x) for x in series]
        elif parts[4:] == ["instances"] and parts[3] in series:
            rows = [{**uid("00080016", CT_IMAGE), **uid("00080018", sop)} for sop in series[parts[3]]]
        else:
            rows = None
        if rows is not None:
            answer(handler, 200, json.dumps(rows).encode(), "application/dicom+json")
            return
        in_series = series.get(parts[3], {}) if len(parts) >= 4 else {}
        wanted = in_series
        if len(parts) == 6:
            wanted = {parts[5]: in_series[parts[5]]} if parts[5] in in_series else {}
        how = (broken or {}).get(parts[3], "") if len(parts) >= 4 else ""
        if not wanted or how == "404":
            answer(handler, 404, b"{}")
            return
        whole = multipart(list(wanted.values()))
        if how == "cut" and list(in_series)[1] in wanted and not cut_once:
            cut_once.append(parts[3])
            answer(handler, 200, whole[:len(whole) - len(list(wanted.values())[-1]) // 2], MULTIPART, length=len(whole))
            handler.close_connection = True
        else:
            answer(handler, 200, whole, MULTIPART)

    return script


def series_of(files: dict[str, Path]) -> list[list[str]]:
    """The SOPInstanceUIDs of ``peers.write_ct_study``'s files, series by series."""
    by_series: dict[str, list[str]] = {}
    for sop, path in files.items():
        by_series.setdefault(path.name.split("-")[0], []).append(sop)
    return list(by_series.values())


def wado_requests(server: ScriptedHttp) -> list[str]:
    return sorted(path for path, _ in server.requests if not path.split("?")[0].endswith(("/series", "/instances")))


def test_a_404_or_a_cut_instance_leaves_it_missing_by_name(
        scripted: Callable[..., ScriptedHttp], tmp_path: Path, isolated_cache: Path) -> None:
    import peers

    study, files = peers.write_ct_study(tmp_path, series=3, per_series=2)
    (gone, gone2), (first, cut), (kept, kept2) = series_of(files)
    uids = {sop: str(pydicom.dcmread(files[sop], stop_before_pixels=True).SeriesInstanceUID) for sop in files}
    server = scripted(study_server(files, {uids[gone]: "404", uids[first]: "cut"}))
    with pytest.raises(RetrieveIncomplete, match="3 of 6 instances listed by scripted did not arrive") as info:
        dicomnb.retrieve(server.node(), study)
    assert set(info.value.missing) == {gone, gone2, cut}
    result = info.value.result
    assert {r.SOPInstanceUID for r in result.instances} == {first, kept, kept2} and result.retrieved == 3
    assert sorted(result.errors) == sorted([
        f"scripted ({server.url}): instance {gone} not found (HTTP 404)",
        f"scripted ({server.url}): instance {gone2} not found (HTTP 404)",
        f"scripted ({server.url}): the answer to the retrieve of instance {cut} is not usable: the multipart "
        "body was cut short in the middle of part 1: try again; if it happens again, see the server's log"])
    assert isinstance(info.value.__cause__, MalformedResponse)  # the network error behind it
    assert {sop for sop in files if sop in dicomnb.catalog} == {first, kept, kept2}
    assert not [p for p in store_files(isolated_cache) if p.name.startswith(".part-")]
    # the jobs say it too: one per series, two of them incomplete
    states = {job.series_uid: job.text for job in dicomnb.downloads()}
    assert states == {uids[gone]: "incomplete: 2 missing", uids[first]: "incomplete: 1 missing",
                      uids[kept]: f"complete: 2 instances, {states[uids[kept]].split(', ')[1]}"}
    # each instance was asked for on its own, once
    assert wado_requests(server) == sorted(f"/dicom-web/studies/{study}/series/{uids[s]}/instances/{s}" for s in files)
    # retrieving again asks only for what is missing: the cut instance comes this time
    server.requests.clear()
    with pytest.raises(RetrieveIncomplete) as info:
        dicomnb.retrieve(server.node(), study)
    assert set(info.value.missing) == {gone, gone2} and info.value.result.retrieved == 1
    assert wado_requests(server) == sorted(f"/dicom-web/studies/{study}/series/{uids[s]}/instances/{s}"
                                           for s in (gone, gone2, cut))


def test_instances_in_the_store_are_not_fetched_again(scripted: Callable[..., ScriptedHttp], tmp_path: Path,
                                                      isolated_cache: Path) -> None:
    import peers

    study, files = peers.write_ct_study(tmp_path, series=3, per_series=2)
    (stored, stored2), (half, lacking), (fresh, fresh2) = series_of(files)
    uids = {sop: str(pydicom.dcmread(files[sop], stop_before_pixels=True).SeriesInstanceUID) for sop in files}
    for sop in (stored, stored2, half):
        path = instance_path(study, uids[sop], sop)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[sop].read_bytes())
    server = scripted(study_server(files))
    done: list[tuple[int, int]] = []
    result = dicomnb.retrieve(server.node(), study, progress=lambda n, total: done.append((n, total)))
    assert result.complete and result.retrieved == 3 and len(result.instances) == 6
    assert {r.SOPInstanceUID for r in result.instances} == set(files) and all(sop in dicomnb.catalog for sop in files)
    # nothing of the stored series; the others instance by instance (a download pauses between two)
    assert wado_requests(server) == sorted(f"/dicom-web/studies/{study}/series/{uids[s]}/instances/{s}"
                                           for s in (lacking, fresh, fresh2))
    # progress: one call per instance fetched, counting what is landed or stored against what
    # has been listed so far (series are listed and fetched side by side: the order varies)
    assert len(done) == 3 and all(0 < n <= total <= 6 for n, total in done)
    for sop in (lacking, fresh, fresh2):
        assert instance_path(study, uids[sop], sop).read_bytes() == files[sop].read_bytes()
    # one series only; everything stored: nothing asked for but the listing (the series, for the
    # download's label, and its instances)
    server.requests.clear()
    again = dicomnb.retrieve(server.node(), study, [uids[fresh]])
    assert again.retrieved == 0 and {r.SOPInstanceUID for r in again.instances} == {fresh, fresh2}
    assert wado_requests(server) == [] and len(server.requests) == 2
