"""C-FIND against real servers (Orthanc, dcmqrscp, qrscp) and scripted peers, and its typed errors."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import Any

import pydicom
import pytest
from conftest import require_module
from netcommon import (  # noqa: F401 - collect_garbage: autouse fixture
    CT_INSTANCE,
    CT_SERIES,
    CT_STUDY,
    PEERS,
    collect_garbage,
    node_of,
    pynetdicom_socket_leak,
)

import dicomnb
from dicomnb import cli
from dicomnb.core.criteria import SearchCriteria
from dicomnb.core.errors import (
    AssociationRejected,
    ConfigError,
    ConnectionFailed,
    CriteriaError,
    QueryFailed,
)
from dicomnb.core.nodes import DicomNode
from dicomnb.core.query import (
    IMAGE_COLUMNS,
    SERIES_COLUMNS,
    STUDY_COLUMNS,
    QueryResult,
    find_identifier,
    parse_date_range,
)

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


def loaded_studies() -> dict[str, set[str]]:
    """StudyInstanceUID → SOP Instance UIDs of the files the peers were loaded with."""
    import peers

    studies: dict[str, set[str]] = defaultdict(set)
    for path in peers.dataset_files():
        ds = pydicom.dcmread(path, stop_before_pixels=True,
                             specific_tags=["StudyInstanceUID", "SOPInstanceUID"])
        studies[str(ds.StudyInstanceUID)].add(str(ds.SOPInstanceUID))
    return dict(studies)


@pytest.fixture(params=PEERS)
def server(request: pytest.FixtureRequest) -> DicomNode:
    """Each real peer in turn, as a node."""
    return node_of(request.getfixturevalue(request.param))


def ids(result: QueryResult) -> list[str]:
    return sorted(str(row.get("PatientID") or "") for row in result.rows)


# --- No network: identifiers, date ranges, the result type ---------------------------------------

def test_identifiers_keep_to_what_strict_archives_accept() -> None:
    study = find_identifier(SearchCriteria(patient_name="Doe*", modalities=("CT",)))
    assert study["QueryRetrieveLevel"] == "STUDY" and study["SpecificCharacterSet"] == "ISO_IR 192"
    assert study["PatientName"] == "Doe*" and study["ModalitiesInStudy"] == ["CT"]
    assert set(STUDY_COLUMNS) <= set(study)
    series = find_identifier(SearchCriteria(patient_name="Doe*", modalities=("CT",)), "series",
                             study_uid="1.2.3")
    assert series["StudyInstanceUID"] == "1.2.3" and series["Modality"] == "CT"
    assert "PatientName" not in series and set(SERIES_COLUMNS) <= set(series)
    image = find_identifier(None, "image", study_uid="1.2.3", series_uid="1.2.3.4")
    assert image["QueryRetrieveLevel"] == "IMAGE" and image["SeriesInstanceUID"] == "1.2.3.4"
    assert set(IMAGE_COLUMNS) <= set(image)
    with pytest.raises(CriteriaError, match="needs the StudyInstanceUID"):
        find_identifier(None, "series")
    with pytest.raises(CriteriaError, match="choose study, series or image"):
        find_identifier(None, "patient")


def test_date_ranges_as_typed() -> None:
    assert parse_date_range("20040101-20041231") == (date(2004, 1, 1), date(2004, 12, 31))
    assert parse_date_range("2004-01-01..2004-12-31") == (date(2004, 1, 1), date(2004, 12, 31))
    assert parse_date_range("20040101-") == (date(2004, 1, 1), None)
    assert parse_date_range("..2004-12-31") == (None, date(2004, 12, 31))
    assert parse_date_range("2004-02-29") == (date(2004, 2, 29), date(2004, 2, 29))
    for bad in ("yesterday", "2004-02-30..", "-", "2004/01/01-2004/02/01"):
        with pytest.raises(CriteriaError):
            parse_date_range(bad)


def test_query_result_frame_and_messages() -> None:
    rows = [{"PatientName": "Doe^J", "ModalitiesInStudy": ["CT", "MR"], "NumberOfStudyRelatedInstances": 3,
             "StudyInstanceUID": "1.2", "RetrieveAETitle": "X"},
            {"PatientName": "Roe^R", "NumberOfStudyRelatedInstances": None, "StudyInstanceUID": "1.3"}]
    result = QueryResult(rows=rows, level="study", node="pacs", limit=2, limited=True, seconds=0.5)
    frame = result.frame
    assert list(frame.columns[:len(STUDY_COLUMNS)]) == list(STUDY_COLUMNS)
    assert frame.columns[-1] == "RetrieveAETitle"
    assert str(frame["NumberOfStudyRelatedInstances"].dtype) == "Int64"
    assert frame["ModalitiesInStudy"].tolist()[0] == "CT\\MR"
    assert "stopped after 2 studies" in result.message
    assert "stopped after 2 series" in QueryResult(rows=rows, level="series", limit=2, limited=True).message
    assert "stopped after 2 instances" in QueryResult(rows=rows, level="image", limit=2, limited=True).message
    assert QueryResult(rows=rows[:1], cancelled=True).message.startswith("cancelled: 1 study")
    assert json.loads(json.dumps(result.to_json()))["rows"] == rows
    assert "<table" in result._repr_html_() and "2 rows" in repr(result)
    assert len(QueryResult().frame.columns) == len(STUDY_COLUMNS)


# --- Real servers ---------------------------------------------------------------------------------

@pytest.mark.integration
def test_all_studies(server: DicomNode) -> None:
    result = dicomnb.query(server, SearchCriteria())
    assert {row["StudyInstanceUID"] for row in result.rows} == set(loaded_studies())
    assert len(result) == len(loaded_studies()) and not result.limited and not result.cancelled
    assert result.message.startswith(f"{len(result)} studies from {server.name} in ")
    frame = result.frame
    assert list(frame.columns[:len(STUDY_COLUMNS)]) == list(STUDY_COLUMNS)
    assert str(frame["NumberOfStudyRelatedSeries"].dtype) == "Int64"
    ct = next(row for row in result.rows if row["StudyInstanceUID"] == CT_STUDY)
    assert ct["PatientName"] == "CompressedSamples^CT1" and ct["StudyDate"] == "20040119"
    if server.name == "orthanc":  # the lenient archive gives the optional counts and modalities
        assert ct["ModalitiesInStudy"] == ["CT"] and ct["NumberOfStudyRelatedInstances"] == 1
    else:  # the strict ones leave them out
        assert "ModalitiesInStudy" not in ct and "NumberOfStudyRelatedInstances" not in ct


@pytest.mark.integration
def test_patient_name_wildcards(server: DicomNode) -> None:
    assert ids(dicomnb.query(server, patient_name="Comp*")) == ["1CT1", "4MR1"]
    assert ids(dicomnb.query(server, patient_name="CompressedSamples^CT?")) == ["1CT1"]
    assert ids(dicomnb.query(server, patient_name="CompressedSamples^CT")) == []


@pytest.mark.integration
def test_patient_id_is_matched_exactly(server: DicomNode) -> None:
    assert ids(dicomnb.query(server, patient_id="1CT1")) == ["1CT1"]
    assert ids(dicomnb.query(server, patient_id="1CT")) == []


@pytest.mark.integration
def test_modalities_filter_on_every_archive(server: DicomNode) -> None:
    # Orthanc matches ModalitiesInStudy; dcmqrscp and qrscp ignore it (they return all 16
    # studies), so dicomnb checks the series of each study and keeps the CT one only.
    result = dicomnb.query(server, modalities=("CT",))
    assert [row["StudyInstanceUID"] for row in result.rows] == [CT_STUDY]
    assert result.rows[0]["ModalitiesInStudy"] == ["CT"]
    checked = [note for note in result.notes if "does not return ModalitiesInStudy" in note]
    assert bool(checked) == (server.name != "orthanc")
    several = dicomnb.query(server, modalities=("OT", "CR"))
    assert ids(several) == sorted(["ID1", "SCSRUSS", "2008-3", "SCSFREN", "SCSGERM", "2008-4", "X1EXAMPLE"])
    assert all({"OT", "CR"} & set(row["ModalitiesInStudy"]) for row in several.rows)
    limited = dicomnb.query(server, modalities=("OT", "CR"), limit=2)
    assert len(limited) == 2 and limited.limited


@pytest.mark.integration
def test_study_date_range_and_period(server: DicomNode) -> None:
    year = dicomnb.query(server, date_from="2004-01-01", date_to="2004-12-31")
    assert ids(year) == ["1CT1", "4MR1"]
    open_end = dicomnb.query(server, date_from="2011-01-01")
    assert ids(open_end) == ["11-05-25-142825", "642341", "ID1"]
    week = dicomnb.query(server, period="last-week", now=datetime(2004, 1, 20, 9, 0))
    assert ids(week) == ["1CT1"]
    assert len(dicomnb.query(server, period="today", now=datetime(2004, 1, 20))) == 0


@pytest.mark.integration
def test_non_ascii_names_match_through_utf8(server: DicomNode) -> None:
    cyrillic = dicomnb.query(server, patient_name="Люкceмбypг")
    korean = dicomnb.query(server, patient_name="김희중*")
    # All three archives match both names sent in ISO_IR 192 ...
    assert ids(cyrillic) == ["SCSRUSS"] and ids(korean) == ["2008-3"]
    names = (cyrillic.rows[0]["PatientName"], korean.rows[0]["PatientName"])
    if server.name == "dcmqrscp":  # ... dcmqrscp answers in UTF-8 too: the names come back whole
        assert names == ("Люкceмбypг", "김희중")
    else:
        # Orthanc answers in its DefaultEncoding (Latin-1 unless configured "Utf8") and qrscp
        # keeps names in a database that loses what ASCII cannot hold: the names come back cut.
        assert names[0] != "Люкceмбypг" and names[1] != "김희중"


@pytest.mark.integration
def test_series_and_image_levels(server: DicomNode) -> None:
    series = dicomnb.query(server, level="series", study_uid=CT_STUDY)
    assert series.level == "series" and len(series) == 1
    row = series.rows[0]
    assert row["SeriesInstanceUID"] == CT_SERIES and row["Modality"] == "CT" and row["SeriesNumber"] == 1
    assert list(series.frame.columns[:len(SERIES_COLUMNS)]) == list(SERIES_COLUMNS)
    images = dicomnb.query(server, level="image", study_uid=CT_STUDY, series_uid=CT_SERIES)
    assert [r["SOPInstanceUID"] for r in images.rows] == [CT_INSTANCE]
    assert images.rows[0]["InstanceNumber"] == 1
    assert len(dicomnb.query(server, level="series", study_uid=CT_STUDY, modalities=("MR",))) == 0
    # SERIES queries keep the last preset out, and need the study
    with pytest.raises(CriteriaError, match="needs the StudyInstanceUID"):
        dicomnb.query(server, level="series")


@pytest.mark.integration
def test_find_instances_gives_exactly_the_loaded_instances(server: DicomNode) -> None:
    studies = loaded_studies()
    chosen = [CT_STUDY, *[uid for uid in studies if uid != CT_STUDY][::5]]  # a few, to stay quick
    for study_uid in chosen:
        instances = studies[study_uid]
        rows = dicomnb.find_instances(server, study_uid)
        assert {str(r["SOPInstanceUID"]) for r in rows} == instances, study_uid
        assert len(rows) == len(instances)
        assert all(r["StudyInstanceUID"] == study_uid and r["SeriesInstanceUID"] for r in rows)
    assert [r["SOPInstanceUID"] for r in dicomnb.find_instances(server, CT_STUDY, [CT_SERIES])] == [CT_INSTANCE]
    assert dicomnb.find_instances(server, CT_STUDY, ["1.2.3.4.5.6.7"]) == []


@pytest.mark.integration
@pytest.mark.parametrize("limit", [1, 2])
def test_limit_stops_after_n(server: DicomNode, limit: int) -> None:
    result = dicomnb.query(server, limit=limit)
    assert len(result) == limit and result.limited and not result.cancelled
    assert f"stopped after {limit} {'study' if limit == 1 else 'studies'} (the limit)" in result.message
    series = dicomnb.query(server, level="series", study_uid=CT_STUDY, limit=1)
    assert len(series) == 1 and not series.limited  # exactly one: the archive had no more
    everything = dicomnb.query(server, limit=100)
    assert len(everything) == len(loaded_studies()) and not everything.limited
    assert "stopped" not in everything.message
    assert dicomnb.echo(server) > 0  # the archive is still fine after the C-CANCELs


@pytest.mark.integration
def test_pages_cover_every_study_once(server: DicomNode) -> None:
    # C-FIND has no offset: page N receives and skips the first (N - 1) × limit matches.
    def uids(result: QueryResult) -> list[str]:
        return [str(row["StudyInstanceUID"]) for row in result.rows]

    everything = uids(dicomnb.query(server, limit=0))
    pages, page = [], 1
    while True:
        result = dicomnb.query(server, limit=2, page=page)
        assert result.page == page and result.to_json()["page"] == page
        pages.append(uids(result))
        if not result.limited:
            break
        page += 1
    seen = [uid for rows in pages for uid in rows]
    assert sorted(seen) == sorted(everything) and len(set(seen)) == len(seen)
    assert all(len(rows) == 2 for rows in pages[:-1]) and len(pages) == (len(everything) + 1) // 2
    assert len(dicomnb.query(server, limit=2, page=len(pages) + 1)) == 0


def test_a_page_needs_a_limit_and_a_number() -> None:
    dicomnb.add_node("pacs", "PACS", "127.0.0.1", 104)
    with pytest.raises(CriteriaError, match="needs a limit"):
        dicomnb.query("pacs", page=2)
    with pytest.raises(CriteriaError, match="page must be a whole number"):
        dicomnb.query("pacs", limit=2, page=0)


@pytest.mark.integration
def test_stopping_early_releases_the_association(orthanc: Any) -> None:
    from dicomnb.sources.dimse import find

    stream = find(node_of(orthanc), SearchCriteria())
    assert next(stream)["StudyInstanceUID"]
    stream.close()  # C-CANCEL, then the association ends
    assert len(dicomnb.query(node_of(orthanc))) == len(loaded_studies())


@pytest.mark.integration
@pytest.mark.parametrize(("peer", "status", "words"), [("dcmqrscp", 0xC000, "unable to process"),
                                                       ("qrscp", 0xA900, "identifier does not match")])
def test_strict_archives_refuse_a_series_query_without_its_study(
    request: pytest.FixtureRequest, peer: str, status: int, words: str
) -> None:
    from dicomnb.sources.dimse import find

    node = node_of(request.getfixturevalue(peer))
    with pytest.raises(QueryFailed, match=words) as info:
        list(find(node, {"QueryRetrieveLevel": "SERIES", "SeriesInstanceUID": "", "Modality": ""}))
    assert info.value.status == status and f"0x{status:04X}" in str(info.value)
    assert "StudyInstanceUID" in str(info.value)


@pytest.mark.integration
def test_rejected_association(dcmqrscp: Any) -> None:
    with pytest.raises(AssociationRejected, match="called ae title not recognised"):
        dicomnb.query(node_of(dcmqrscp, aet="NOBODY"))


@pynetdicom_socket_leak
def test_refused_port() -> None:
    require_module("pynetdicom")
    import peers

    with pytest.raises(ConnectionFailed, match="connection refused"):
        dicomnb.query(DicomNode("down", "DOWN", "127.0.0.1", peers.free_port()), timeout=5)


@pytest.mark.integration
def test_last_chosen_preset_applies_again(orthanc: Any) -> None:
    node = node_of(orthanc)
    dicomnb.presets().save("CT only", SearchCriteria(modalities=("CT",)))
    assert ids(dicomnb.query(node, preset="CT only")) == ["1CT1"]
    assert dicomnb.presets().last_chosen == "CT only"
    assert ids(dicomnb.query(node)) == ["1CT1"]  # nothing given: the preset chosen last
    assert ids(dicomnb.query(node, preset="CT only", modalities=("MR",))) == ["021234567", "4MR1"]
    assert len(dicomnb.query(node, patient_name="*")) == len(loaded_studies())  # fields: no preset
    with pytest.raises(ConfigError, match="no preset named"):
        dicomnb.query(node, preset="nope")


# --- Scripted peers: slow, silent after association, failing, undeclared character set ------------

class ScriptedFind:
    """An in-process Study Root C-FIND SCP whose answers the test writes (pynetdicom's AE).

    ``script(event)`` is the C-FIND handler: a generator of (status, identifier) pairs. Handlers
    that wait use :attr:`release`, set when the peer stops, so no thread outlives the test.
    """

    def __init__(self, script: Callable[[Any, threading.Event], Iterator[Any]]) -> None:
        from pynetdicom import AE, evt

        self.release = threading.Event()
        self.ae = AE(ae_title="SCRIPTED")
        self.ae.add_supported_context(STUDY_ROOT_FIND)
        self.server = self.ae.start_server(
            ("127.0.0.1", 0), block=False,
            evt_handlers=[(evt.EVT_C_FIND, lambda event: script(event, self.release))])
        self.node = DicomNode("scripted", "SCRIPTED", "127.0.0.1", int(self.server.server_address[1]))

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedFind]]:
    require_module("pynetdicom")
    made: list[ScriptedFind] = []

    def make(script: Callable[[Any, threading.Event], Iterator[Any]]) -> ScriptedFind:
        made.append(ScriptedFind(script))
        return made[-1]

    yield make
    for peer in made:
        peer.close()


def study(name: str | bytes, uid: str, charset: str | None = "ISO_IR 192") -> pydicom.Dataset:
    ds = pydicom.Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = name
    ds.StudyInstanceUID = uid
    return ds


def one_then_wait(event: Any, release: threading.Event) -> Iterator[Any]:
    yield 0xFF00, study("First^Row", "1.2.3.1")
    release.wait(30)  # an archive that takes its time over the rest
    yield 0xFF00, study("Second^Row", "1.2.3.2")


def test_cancel_returns_at_once_with_the_rows_so_far(scripted: Callable[..., ScriptedFind]) -> None:
    peer = scripted(one_then_wait)
    cancel = threading.Event()
    results: list[QueryResult] = []
    worker = threading.Thread(target=lambda: results.append(
        dicomnb.query(peer.node, SearchCriteria(), cancel=cancel, timeout=20)))
    worker.start()
    time.sleep(0.5)  # the first row has arrived, the second will not
    started = time.monotonic()
    cancel.set()
    worker.join(5)
    assert time.monotonic() - started < 2 and not worker.is_alive()
    (result,) = results
    assert result.cancelled and not result.limited
    assert [row["PatientName"] for row in result.rows] == ["First^Row"]
    assert result.message.startswith("cancelled: 1 study from scripted had arrived")


def test_an_entity_answered_once_per_instance_is_one_row(scripted: Callable[..., ScriptedFind]) -> None:
    # pynetdicom's qrscp answers a STUDY query once per instance of the study.
    def per_instance(event: Any, release: threading.Event) -> Iterator[Any]:
        for uid in ("1.2.3.1", "1.2.3.1", "1.2.3.2", "1.2.3.1", "1.2.3.3"):
            yield 0xFF00, study("Doe^Jane", uid)
        yield 0x0000, None

    peer = scripted(per_instance)
    result = dicomnb.query(peer.node, SearchCriteria(), timeout=10)
    assert [row["StudyInstanceUID"] for row in result.rows] == ["1.2.3.1", "1.2.3.2", "1.2.3.3"]
    limited = dicomnb.query(peer.node, SearchCriteria(), limit=2, timeout=10)
    assert [row["StudyInstanceUID"] for row in limited.rows] == ["1.2.3.1", "1.2.3.2"] and limited.limited


def test_cancel_before_any_answer(scripted: Callable[..., ScriptedFind]) -> None:
    def never(event: Any, release: threading.Event) -> Iterator[Any]:
        release.wait(30)
        yield 0x0000, None

    peer = scripted(never)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    result = dicomnb.query(peer.node, SearchCriteria(), cancel=cancel, timeout=20)
    assert time.monotonic() - started < 2 and result.cancelled and result.rows == []


def test_no_answer_in_time_is_a_typed_error(scripted: Callable[..., ScriptedFind]) -> None:
    peer = scripted(one_then_wait)
    started = time.monotonic()
    with pytest.raises(QueryFailed, match="no answer to the C-FIND within 1 s") as info:
        dicomnb.query(peer.node, SearchCriteria(), timeout=1)
    assert info.value.status is None and time.monotonic() - started < 4


@pytest.mark.parametrize(("status", "words"), [(0xA700, "out of resources"),
                                               (0xA900, "identifier does not match SOP class"),
                                               (0xC123, "unable to process")])
def test_failure_statuses_are_typed(scripted: Callable[..., ScriptedFind], status: int, words: str) -> None:
    def fail(event: Any, release: threading.Event) -> Iterator[Any]:
        yield 0xFF00, study("First^Row", "1.2.3.1")
        yield status, None

    peer = scripted(fail)
    with pytest.raises(QueryFailed, match=words) as info:
        dicomnb.query(peer.node, SearchCriteria())
    assert info.value.status == status and f"0x{status:04X}" in str(info.value)


def test_a_response_without_character_set_reads_as_the_query(scripted: Callable[..., ScriptedFind]) -> None:
    def undeclared(event: Any, release: threading.Event) -> Iterator[Any]:
        assert event.identifier.SpecificCharacterSet == "ISO_IR 192"
        assert event.identifier.PatientName == "Люкceмбypг"  # sent in UTF-8
        yield 0xFF00, study("Люкceмбypг".encode(), "1.2.3.1", charset=None)
        yield 0xFF00, study("Buc^Jérôme".encode("latin-1"), "1.2.3.2", charset=None)
        yield 0xFF00, study("김희중", "1.2.3.3", charset="ISO_IR 192")

    peer = scripted(undeclared)
    result = dicomnb.query(peer.node, patient_name="Люкceмбypг")
    # UTF-8 bytes are read as the query's; bytes that are not UTF-8 stay as the archive's default
    assert [row["PatientName"] for row in result.rows] == ["Люкceмбypг", "Buc^Jérôme", "김희중"]


def test_text_the_character_set_cannot_hold_is_refused_before_sending() -> None:
    require_module("pynetdicom")
    from dicomnb.sources.dimse import find

    node = DicomNode("unused", "UNUSED", "127.0.0.1", 9)
    with pytest.raises(CriteriaError, match="character set ISO_IR 100.*ISO_IR 192"):
        next(find(node, SearchCriteria(patient_name="김희중", specific_character_set="ISO_IR 100")))
    with pytest.raises(CriteriaError, match="not a DICOM keyword"):
        next(find(node, {"QueryRetrieveLevel": "STUDY", "PatientNom": ""}))


# --- Command line ---------------------------------------------------------------------------------

@pytest.mark.integration
def test_cli_query_json(orthanc: Any, capsys: pytest.CaptureFixture[str]) -> None:
    dicomnb.add_node("pacs", orthanc.aet, orthanc.host, orthanc.port)
    assert cli.main(["query", "pacs", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert len(answer["rows"]) == len(loaded_studies()) and answer["limited"] is False
    assert {"PatientName", "StudyInstanceUID", "ModalitiesInStudy"} <= set(answer["rows"][0])

    assert cli.main(["query", "pacs", "--limit", "1", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert len(answer["rows"]) == 1 and answer["limited"] is True
    assert "stopped after 1 study (the limit)" in answer["message"]

    assert cli.main(["query", "pacs", "--patient-name", "Люк*", "--json"]) == 0
    assert [r["PatientID"] for r in json.loads(capsys.readouterr().out)["rows"]] == ["SCSRUSS"]

    assert cli.main(["query", "pacs", "--modality", "CT", "MR", "--date", "2004-01-01..2004-12-31"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["PatientName", "PatientID", "StudyDate"]
    assert len(out) == 4 and out[-1].startswith("2 studies from pacs in ")

    assert cli.main(["query", "pacs", "--level", "series", "--study", CT_STUDY]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "CT" in out[1].split() and CT_SERIES in out[1] and out[-1].startswith("1 series from pacs")

    assert cli.main(["query", "pacs", "--level", "image", "--study", CT_STUDY, "--json"]) == 0
    assert [r["SOPInstanceUID"] for r in json.loads(capsys.readouterr().out)["rows"]] == [CT_INSTANCE]


@pytest.mark.parametrize("args", [
    ["query", "nowhere"],
    ["query", "pacs", "--level", "series"],
    ["query", "pacs", "--date", "last tuesday"],
    ["query", "pacs", "--limit", "-1"],
    ["query", "pacs", "--page", "2"],
    ["query", "pacs", "--preset", "nope"],
    ["query", "pacs", "--period", "someday"],
    ["query", "pacs", "--period", "today", "--date", "20240101-"],
])
def test_cli_query_bad_arguments_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    dicomnb.add_node("pacs", "PACS", "127.0.0.1", 104)
    try:
        code = cli.main(args)
    except SystemExit as exc:  # argparse's own checks (choices, exclusive options)
        code = exc.code  # type: ignore[assignment]
    assert code == cli.EXIT_USAGE
    assert capsys.readouterr().err


@pytest.mark.integration
@pynetdicom_socket_leak
def test_cli_query_network_failure_exits_4(dcmqrscp: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import peers

    dicomnb.add_node("wrong", "NOBODY", dcmqrscp.host, dcmqrscp.port)
    assert cli.main(["query", "wrong"]) == cli.EXIT_NETWORK
    assert "dicomnb query: " in capsys.readouterr().err
    dicomnb.add_node("down", "DOWN", "127.0.0.1", peers.free_port())
    assert cli.main(["query", "down", "--timeout", "5"]) == cli.EXIT_NETWORK
    assert "connection refused" in capsys.readouterr().err
