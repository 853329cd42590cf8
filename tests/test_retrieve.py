"""Retrieve (C-GET, C-MOVE, WADO-URI) from real servers and scripted peers, and its typed errors."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import TEST_FILES, require_module, require_tool
from netcommon import CT_INSTANCE, CT_SERIES, CT_STUDY, PEERS, collect_garbage, node_of  # noqa: F401 - collect_garbage: autouse fixture
from peers import LoopbackPeer, accept_every_context
from pydicom.uid import generate_uid

import dicomnb
from dicomnb import cli
from dicomnb.core.errors import (
    AssociationAborted,
    ConfigError,
    ConnectionFailed,
    QueryFailed,
    RetrieveIncomplete,
)
from dicomnb.core.nodes import CallingNode, DicomNode, NodeStore
from dicomnb.core.retrieval import Expected, Landing, RetrieveResult
from dicomnb.core.store import instance_path
from dicomnb.core.tcs import EXPLICIT_LE, IMAGE_SYNTAXES, IMPLICIT_LE, PLAIN_SYNTAXES, TransferSyntaxes

GET_MODEL = "1.2.840.10008.5.1.4.1.2.2.3"
FIND_MODEL = "1.2.840.10008.5.1.4.1.2.2.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def mover(peer: Any) -> CallingNode:
    """The calling node the peer knows as its C-MOVE destination."""
    return CallingNode(aet=peer.move_aet, port=peer.move_port)


def sources() -> dict[str, Path]:
    """SOP Instance UID → the pydicom file the peers were loaded with."""
    import peers

    return {peers.sop_instance_uid(path): path for path in peers.dataset_files()}


def study_of(name: str) -> tuple[str, str, str]:
    import peers

    path = peers.PYDICOM_DATA / "test_files" / name
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def assert_same_as_sources(result: RetrieveResult, originals: dict[str, Path]) -> None:
    """Every instance is in the catalog, its file in the store, its data set equal to the original."""
    assert not result.missing
    for record in result.instances:
        assert dicomnb.catalog.get(record.SOPInstanceUID) == record
        stored = Path(record.path)
        assert stored == instance_path(str(record.StudyInstanceUID), str(record.SeriesInstanceUID),
                                       record.SOPInstanceUID)
        assert record.SOPInstanceUID not in str(stored)  # names are hashes, never UIDs
        ours = pydicom.dcmread(stored)
        original = pydicom.dcmread(originals[record.SOPInstanceUID])
        if "DataSetTrailingPadding" in original and "DataSetTrailingPadding" not in ours:
            del original.DataSetTrailingPadding  # Orthanc drops it when it stores the file
        if ours.file_meta.TransferSyntaxUID != original.file_meta.TransferSyntaxUID:
            # qrscp sends some instances in implicit VR: private elements then read back as UN
            ours.remove_private_tags()
            original.remove_private_tags()
        assert ours == original, record.SOPInstanceUID
        assert ours.file_meta.MediaStorageSOPInstanceUID == record.SOPInstanceUID
        assert ours.file_meta.TransferSyntaxUID == record.TransferSyntaxUID


# --- No network: transfer syntaxes, store layout ------------------------------------------------

def test_transfer_syntaxes_defaults_and_config_files(tmp_path: Path) -> None:
    defaults = TransferSyntaxes.load(tmp_path)
    assert defaults.for_class(CT_IMAGE) == IMAGE_SYNTAXES
    assert defaults.for_class("1.2.840.10008.5.1.4.1.1.481.5") == PLAIN_SYNTAXES  # RT Plan
    (tmp_path / "store-tcs.properties").write_text(
        "# like Weasis's store-tcs.properties\nCTImageStorage = ImplicitVRLittleEndian\n"
        "* = ExplicitVRLittleEndian, 1.2.840.10008.1.2\n")
    changed = TransferSyntaxes.load(tmp_path)
    assert changed.for_class(CT_IMAGE) == (IMPLICIT_LE,)
    assert changed.for_class("1.2.840.10008.5.1.4.1.1.4") == (EXPLICIT_LE, IMPLICIT_LE)
    (tmp_path / "store-tcs.json").write_text(json.dumps({CT_IMAGE: ["JPEGBaseline8Bit"]}))
    assert TransferSyntaxes.load(tmp_path).for_class(CT_IMAGE) == ("1.2.840.10008.1.2.4.50",)
    (tmp_path / "store-tcs.json").write_text(json.dumps({"CTImageStorage": ["NoSuchSyntax"]}))
    with pytest.raises(ConfigError, match="NoSuchSyntax.*neither a transfer syntax UID"):
        TransferSyntaxes.load(tmp_path)
    (tmp_path / "store-tcs.json").write_text(json.dumps({"CTImageStorage": []}))
    with pytest.raises(ConfigError, match="at least one transfer syntax"):
        TransferSyntaxes.load(tmp_path)


def test_store_layout_is_made_of_hashes(isolated_cache: Path) -> None:
    hostile = "../../etc/passwd"
    path = instance_path("1.2.3", hostile, "1.2.3.4.5")
    assert path.is_relative_to(isolated_cache / "store") and ".." not in path.parts
    assert "1.2.3.4.5" not in str(path) and path.suffix == ".dcm" and len(path.parts) - len(
        (isolated_cache / "store").parts) == 3
    assert path == instance_path("1.2.3", hostile, "1.2.3.4.5")  # stable: the same instance, the same file
    assert instance_path("1.2.3", "1.2", "1.2.3.4.5", root=Path("/x")).parts[1] == "x"


def test_landing_refuses_what_was_not_asked_for(test_files: Path) -> None:
    data = (test_files / "CT_small.dcm").read_bytes()
    landing = Landing([Expected(CT_STUDY, CT_SERIES, CT_INSTANCE, CT_IMAGE)], dicomnb.catalog.add_items,
                      source="dimse", origin="here")
    assert landing.land("1.2.3.4", data, sender="X") == 0x0124
    assert landing.land(CT_INSTANCE, b"not DICOM at all" * 10, sender="X") == 0xC000
    assert landing.missing == (CT_INSTANCE,)
    assert landing.land(CT_INSTANCE, data, sender="X") == 0x0000
    assert landing.missing == () and CT_INSTANCE in dicomnb.catalog
    result = landing.result("here", CT_STUDY, "c-get")
    assert result.retrieved == 1 and len(result.errors) == 2 and "not asked for" in result.errors[0]


# --- Real servers ----------------------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("server", PEERS)
def test_c_get_studies_and_a_series(request: pytest.FixtureRequest, server: str) -> None:
    peer = request.getfixturevalue(server)
    node = node_of(peer)
    originals = sources()
    result = dicomnb.retrieve(node, CT_STUDY)
    assert [r.SOPInstanceUID for r in result.instances] == [CT_INSTANCE] and result.retrieved == 1
    assert result.instances[0].source == "dimse" and result.instances[0].origin == server
    assert_same_as_sources(result, originals)
    # other SOP classes and transfer syntaxes: RT plan (implicit VR), SR, ECG waveform
    for name in ("rtplan.dcm", "test-SR.dcm", "waveform_ecg.dcm"):
        study, _, sop = study_of(name)
        got = dicomnb.retrieve(node, study)
        assert [r.SOPInstanceUID for r in got.instances] == [sop]
        assert_same_as_sources(got, originals)
    study, series, sop = study_of("MR_small.dcm")
    one = dicomnb.retrieve(node, study, [series])
    assert [r.SOPInstanceUID for r in one.instances] == [sop] and one.retrieved == 1
    assert_same_as_sources(one, originals)
    assert len(dicomnb.catalog) == 5


@pytest.mark.integration
@pytest.mark.parametrize("server", PEERS)
def test_c_move(request: pytest.FixtureRequest, server: str) -> None:
    peer = request.getfixturevalue(server)
    study, series, sop = study_of("MR_small.dcm")
    result = dicomnb.retrieve(node_of(peer), study, method="c-move", calling=mover(peer))
    assert [r.SOPInstanceUID for r in result.instances] == [sop] and result.retrieved == 1
    assert_same_as_sources(result, sources())
    ct = dicomnb.retrieve(node_of(peer), CT_STUDY, [CT_SERIES], method="c-move", calling=mover(peer))
    assert [r.SOPInstanceUID for r in ct.instances] == [CT_INSTANCE]


@pytest.mark.integration
def test_wado_uri(orthanc: Any) -> None:
    result = dicomnb.retrieve(node_of(orthanc), CT_STUDY, method="wado-uri")
    assert [r.SOPInstanceUID for r in result.instances] == [CT_INSTANCE]
    assert result.instances[0].source == "wado-uri"
    assert_same_as_sources(result, sources())
    with pytest.raises(ConfigError, match="no WADO-URI URL"):
        dicomnb.retrieve(node_of(orthanc, wado_url=None), CT_STUDY, method="wado-uri")
    # a wrong URL: Orthanc answers 404, as for an instance it does not hold
    study, _, sop = study_of("MR_small.dcm")
    with pytest.raises(RetrieveIncomplete, match="not found \\(HTTP 404\\)") as info:
        dicomnb.retrieve(node_of(orthanc, wado_url=f"http://127.0.0.1:{orthanc.http_port}/nowhere"),
                         study, method="wado-uri")
    assert info.value.missing == (sop,)
    # a URL that answers something else than DICOM: reported, nothing lands
    with pytest.raises(RetrieveIncomplete, match="is not usable: it is not DICOM"):
        dicomnb.retrieve(node_of(orthanc, wado_url=f"http://127.0.0.1:{orthanc.http_port}/instances"),
                         study, method="wado-uri")
    assert sop not in dicomnb.catalog


@pytest.mark.integration
def test_again_fetches_nothing_and_dest(orthanc: Any, tmp_path: Path) -> None:
    node = node_of(orthanc)
    first = dicomnb.retrieve(node, CT_STUDY)
    dicomnb.catalog.clear()  # a new session: the store still holds the instance
    again = dicomnb.retrieve(node, CT_STUDY, dest=tmp_path / "out")
    assert first.retrieved == 1 and again.retrieved == 0 and not again.missing
    assert [r.SOPInstanceUID for r in again.instances] == [CT_INSTANCE] and CT_INSTANCE in dicomnb.catalog
    assert "already in the store" in again.message
    copies = list((tmp_path / "out").rglob("*.dcm"))
    assert len(copies) == 1 and pydicom.dcmread(copies[0]).SOPInstanceUID == CT_INSTANCE
    # a damaged store file is fetched again
    Path(first.instances[0].path).write_bytes(b"\0" * 10)
    assert dicomnb.retrieve(node, CT_STUDY).retrieved == 1
    assert pydicom.dcmread(first.instances[0].path).SOPInstanceUID == CT_INSTANCE


@pytest.mark.integration
@pytest.mark.parametrize("server", ["orthanc", "dcmqrscp"])
def test_unknown_move_destination(request: pytest.FixtureRequest, server: str) -> None:
    peer = request.getfixturevalue(server)
    import peers

    stranger = CallingNode(aet="STRANGER", port=peers.free_port())
    with pytest.raises(QueryFailed, match="STRANGER") as info:
        dicomnb.retrieve(node_of(peer), CT_STUDY, method="c-move", calling=stranger, timeout=10)
    assert info.value.status in (0xA801, 0xC000)
    assert "use C-GET" in str(info.value)


@pytest.mark.integration
def test_a_busy_move_port_is_a_config_error(orthanc: Any) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        calling = CallingNode(port=busy.getsockname()[1])
        with pytest.raises(ConfigError, match="cannot listen on 127.0.0.1"):
            dicomnb.retrieve(node_of(orthanc), CT_STUDY, method="c-move", calling=calling)


# --- A study of several series, on servers of our own ----------------------------------------------

@contextlib.contextmanager
def server_holding(name: str, folder: Path, series: int, per_series: int) -> Iterator[Any]:
    """A server of its own (not the session's: their study lists are counted) holding one study."""
    require_module("pynetdicom")
    import peers

    study, files = peers.write_ct_study(folder, series, per_series)
    start = {"orthanc": peers.run_orthanc, "dcmqrscp": peers.run_dcmqrscp, "qrscp": peers.run_qrscp}
    if name in ("orthanc", "dcmqrscp"):
        from conftest import require_tool

        require_tool("Orthanc" if name == "orthanc" else "dcmqrscp")
    with start[name](folder / "server", load=False) as peer:
        assert peers.c_store_files(peer.aet, peer.port, list(files.values())) == {}
        yield peer, study, files


@pytest.fixture(scope="module", params=PEERS)
def several(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A server of its own holding one study: 2 series of 3 CT_small copies with fresh UIDs."""
    with server_holding(request.param, tmp_path_factory.mktemp("several"), 2, 3) as held:
        yield held


@pytest.mark.integration
def test_several_series_get_move_and_resume(several: Any) -> None:
    peer, study, originals = several
    node = node_of(peer)
    done: list[tuple[int, int]] = []
    result = dicomnb.retrieve(node, study, progress=lambda n, total: done.append((n, total)))
    assert {r.SOPInstanceUID for r in result.instances} == set(originals) and result.retrieved == 6
    assert len({r.SeriesInstanceUID for r in result.instances}) == 2
    assert sorted(done)[-1] == (6, 6) and len(done) == 6
    assert_same_as_sources(result, originals)
    # an interrupted retrieve: one instance of one series lost; only it is fetched again
    lost = result.instances[4]
    os.unlink(lost.path)
    dicomnb.catalog.clear()
    again = dicomnb.retrieve(node, study, method="c-move", calling=mover(peer))
    assert again.retrieved == 1 and len(again.instances) == 6 and Path(lost.path).is_file()
    assert_same_as_sources(again, originals)
    # the whole study again by C-MOVE into an empty store
    for record in again.instances:
        os.unlink(record.path)
    moved = dicomnb.retrieve(node, study, method="c-move", calling=mover(peer))
    assert moved.retrieved == 6 and not moved.missing


# --- Cancel mid-way, then resume -------------------------------------------------------------------

@pytest.fixture(scope="module", params=["orthanc", "dcmqrscp"])
def crowded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A server of its own holding one study of 6 series of 20 CT_small copies (120 instances)."""
    with server_holding(request.param, tmp_path_factory.mktemp("crowded"), 6, 20) as held:
        yield held


def data_set_bytes(path: str | Path) -> bytes:
    """The bytes of a Part 10 file after its file meta information (our meta differs by design)."""
    raw = Path(path).read_bytes()
    assert raw[128:132] == b"DICM" and raw[132:136] == b"\x02\x00\x00\x00"
    return raw[144 + int.from_bytes(raw[140:144], "little"):]


def retrieve_threads() -> set[threading.Thread]:
    """Threads of a retrieve: its series, our Storage SCP and its associations."""
    return {t for t in threading.enumerate() if t.name.startswith(("dicomnb-retrieve", "dicomnb-storage"))}


@pytest.fixture
def arrivals(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SOP Instance UID of every instance that reaches a Landing, as it arrives (twice if sent twice)."""
    seen: list[str] = []
    land = Landing.land

    def counting(self: Landing, sop_instance_uid: str, *args: Any, **kwargs: Any) -> int:
        seen.append(sop_instance_uid)
        return land(self, sop_instance_uid, *args, **kwargs)

    monkeypatch.setattr(Landing, "land", counting)
    return seen


@pytest.mark.integration
@pytest.mark.parametrize("method", ["c-get", "c-move"])
def test_cancel_mid_way_then_resume(crowded: Any, method: str, arrivals: list[str], isolated_cache: Path) -> None:
    peer, study, originals = crowded
    node = node_of(peer)
    calling = mover(peer) if method == "c-move" else None
    # set before the start: nothing is asked of the archive
    cancel = threading.Event()
    cancel.set()
    before = dicomnb.retrieve(node, study, method=method, calling=calling, cancel=cancel)
    assert before.cancelled and before.retrieved == 0 and not arrivals and len(dicomnb.catalog) == 0
    assert before.message == f"cancelled before it started: nothing retrieved from {peer.name} ({method})"
    # set once 30% have landed (from the thread landing them)
    cancel = threading.Event()
    set_at: list[float] = []

    def progress(done: int, total: int) -> None:
        if done >= 0.3 * total and not cancel.is_set():
            set_at.append(time.monotonic())
            cancel.set()

    first = dicomnb.retrieve(node, study, method=method, calling=calling, progress=progress, cancel=cancel)
    returned = time.monotonic()
    assert first.cancelled and 0.3 * len(originals) <= first.retrieved < len(originals)
    assert returned - set_at[0] < 1.5, returned - set_at[0]
    assert sorted(first.missing) == sorted(set(originals) - {r.SOPInstanceUID for r in first.instances})
    assert first.message.startswith(f"cancelled: {first.retrieved} of {len(originals)} instances arrived from ")
    assert first.to_json()["cancelled"] is True and len(first.to_json()["missing"]) == len(first.missing)
    assert not retrieve_threads()
    # what landed is complete: byte for byte the data set sent, and nothing half-written
    for record in first.instances:
        assert data_set_bytes(record.path) == data_set_bytes(originals[record.SOPInstanceUID])
    assert sorted(isolated_cache.rglob("*.dcm")) == sorted(Path(r.path) for r in first.instances)
    assert not [p for p in (isolated_cache / "store").rglob("*") if p.is_file() and p.suffix != ".dcm"]
    if method == "c-move":  # our Storage SCP is gone: its port is free again
        with socket.create_server(("127.0.0.1", peer.move_port)):
            pass
    assert dicomnb.echo(node) >= 0  # the archive still answers
    # again: only the missing ones are asked for, and each arrives once
    arrivals.clear()
    second = dicomnb.retrieve(node, study, method=method, calling=calling)
    assert not second.cancelled and not second.missing and second.retrieved == len(first.missing)
    assert sorted(arrivals) == sorted(first.missing)
    assert_same_as_sources(second, originals)


# --- Our Storage SCP refuses what it did not ask for ----------------------------------------------

def test_storage_scp_refuses_unsolicited_instances(test_files: Path) -> None:
    require_module("pynetdicom")
    import peers
    from pynetdicom import AE

    from dicomnb.core.tcs import TransferSyntaxes
    from dicomnb.sources.storescp import StorageSCP

    landing = Landing([Expected(CT_STUDY, CT_SERIES, CT_INSTANCE, CT_IMAGE)], dicomnb.catalog.add_items,
                      source="dimse", origin="test")
    calling = CallingNode(port=peers.free_port())
    with StorageSCP(calling, landing, TransferSyntaxes(), timeout=5):
        ae = AE(ae_title="INTRUDER")
        ae.add_requested_context(CT_IMAGE, [EXPLICIT_LE])
        ae.add_requested_context("1.2.840.10008.5.1.4.1.1.4", [EXPLICIT_LE])
        assoc = ae.associate("127.0.0.1", calling.port, ae_title="DICOMNB")
        assert assoc.is_established
        assert assoc.send_c_store(test_files / "MR_small.dcm").Status == 0x0124
        assert assoc.send_c_store(test_files / "CT_small.dcm").Status == 0x0000
        assoc.release()
        wrong = ae.associate("127.0.0.1", calling.port, ae_title="SOMEONE")
        assert wrong.is_rejected
    assert landing.missing == () and CT_INSTANCE in dicomnb.catalog
    (error,) = landing.errors
    assert "INTRUDER" in error and "not asked for: refused" in error


# --- Scripted peers: incomplete, aborted, silent ---------------------------------------------------

class ScriptedArchive:
    """A pynetdicom Q/R SCP whose C-FIND lists 3 CT instances and whose C-GET sends only 2."""

    def __init__(self, test_files: Path) -> None:
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import CTImageStorage

        source = pydicom.dcmread(test_files / "CT_small.dcm")
        self.study, self.series = generate_uid(), generate_uid()
        self.datasets = []
        for _ in range(3):
            ds = copy.deepcopy(source)
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = self.study, self.series, generate_uid()
            self.datasets.append(ds)
        self.ae = AE(ae_title="SCRIPTED")
        self.ae.add_supported_context(FIND_MODEL)
        self.ae.add_supported_context(GET_MODEL)
        self.ae.add_supported_context(CTImageStorage, [EXPLICIT_LE, IMPLICIT_LE], scu_role=True, scp_role=True)
        self.server = self.ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
            (evt.EVT_C_FIND, self.on_find), (evt.EVT_C_GET, self.on_get)])
        self.node = DicomNode("scripted", "SCRIPTED", "127.0.0.1", int(self.server.server_address[1]))

    def on_find(self, event: Any) -> Iterator[Any]:
        level = event.identifier.QueryRetrieveLevel
        rows = self.datasets if level == "IMAGE" else self.datasets[:1]
        for ds in rows:
            answer = pydicom.Dataset()
            answer.QueryRetrieveLevel = level
            answer.StudyInstanceUID = ds.StudyInstanceUID
            if level != "STUDY":
                answer.SeriesInstanceUID = ds.SeriesInstanceUID
            if level == "IMAGE":
                answer.SOPInstanceUID, answer.SOPClassUID = ds.SOPInstanceUID, ds.SOPClassUID
            yield 0xFF00, answer

    def on_get(self, event: Any) -> Iterator[Any]:
        yield 2
        for ds in self.datasets[:2]:
            yield 0xFF00, ds

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def scripted_archive(test_files: Path) -> Iterator[ScriptedArchive]:
    require_module("pynetdicom")
    archive = ScriptedArchive(test_files)
    yield archive
    archive.close()


def test_incomplete_retrieve_names_the_missing(scripted_archive: ScriptedArchive,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    archive = scripted_archive
    lost = str(archive.datasets[2].SOPInstanceUID)
    with pytest.raises(RetrieveIncomplete, match="1 of 3 instances") as info:
        dicomnb.retrieve(archive.node, archive.study)
    assert info.value.missing == (lost,)
    assert len(dicomnb.catalog) == 2 and lost not in dicomnb.catalog
    result = dicomnb.retrieve(archive.node, archive.study, raise_incomplete=False)
    assert result.missing == (lost,) and result.retrieved == 0 and len(result.instances) == 2
    # the command line: JSON with the missing UIDs, exit status 5
    dicomnb.add_node("scripted", archive.node.aet, archive.node.host, archive.node.port)
    assert cli.main(["retrieve", "scripted", "--study", archive.study, "--json"]) == cli.EXIT_INCOMPLETE
    captured = capsys.readouterr()
    answer = json.loads(captured.out)
    assert answer["missing"] == [lost] and answer["retrieved"] == 0 and len(answer["instances"]) == 2
    assert "retrieve again" in captured.err


class RawArchive(LoopbackPeer):
    """A raw-socket peer: accepts any association, then plays ``script(connection, request,
    stopping)`` (over TLS with ``tls``); ``stopping`` is set when the peer is closed."""

    thread_name = "raw-archive"

    def __init__(self, script: Any, tls: ssl.SSLContext | None = None) -> None:
        self.script, self.tls = script, tls
        super().__init__()

    def handle(self, sock: socket.socket) -> None:
        from dicomnb.sources import upperlayer as ul

        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True)
        conn = ul.Connection(sock, 10)
        with contextlib.suppress(ul.PeerClosed, ul.PeerAborted, ul.PeerSilent):
            kind, body = conn.read_pdu()
            request = ul.Association.decode(body)
            conn.send(accept_every_context(request, 0))
            self.script(conn, request, self.stopping)
        conn.close()


def ct_landing() -> Landing:
    return Landing([Expected(CT_STUDY, CT_SERIES, CT_INSTANCE, CT_IMAGE),
                    Expected(CT_STUDY, CT_SERIES, "1.2.3.4.5.6", CT_IMAGE)],
                   dicomnb.catalog.add_items, source="dimse", origin="raw")


def test_abort_mid_transfer_keeps_what_arrived(test_files: Path) -> None:
    from dicomnb.sources import upperlayer as ul
    from dicomnb.sources.retrieve import retrieve_dimse

    ds = pydicom.dcmread(test_files / "CT_small.dcm")
    data = (test_files / "CT_small.dcm").read_bytes()[ds.file_meta.get("FileMetaInformationGroupLength") + 144:]

    def one_then_abort(conn: Any, request: Any, release: threading.Event) -> None:
        conn.read_message()  # the C-GET-RQ
        context = next(c for c in request.contexts if c.abstract_syntax == CT_IMAGE
                       and c.transfer_syntax == EXPLICIT_LE)
        command = ul.encode_command({ul.AFFECTED_SOP_CLASS: CT_IMAGE, ul.COMMAND_FIELD: ul.C_STORE_RQ,
                                     ul.MESSAGE_ID: 1, ul.PRIORITY: 0, ul.DATA_SET_TYPE: 0,
                                     ul.AFFECTED_SOP_INSTANCE: CT_INSTANCE})
        conn.send_message(context.id, command, data)
        conn.read_message()  # the C-STORE-RSP
        conn.send(ul.ABORT_PDU)

    archive = RawArchive(one_then_abort)
    try:
        landing = ct_landing()
        with pytest.raises(AssociationAborted, match="aborted the association during the C-GET: 1 instance"):
            retrieve_dimse(DicomNode("raw", "RAW", "127.0.0.1", archive.port), landing, timeout=5,
                           sop_classes=[CT_IMAGE])
        assert landing.missing == ("1.2.3.4.5.6",) and CT_INSTANCE in dicomnb.catalog
        assert pydicom.dcmread(landing.records[CT_INSTANCE].path) == ds
    finally:
        archive.close()


def test_silence_during_the_retrieve_is_bounded() -> None:
    from dicomnb.sources.retrieve import retrieve_dimse

    def silent(conn: Any, request: Any, release: threading.Event) -> None:
        release.wait(30)

    archive = RawArchive(silent)
    try:
        with pytest.raises(QueryFailed, match="no answer to the C-MOVE within 1 s") as info:
            retrieve_dimse(DicomNode("raw", "RAW", "127.0.0.1", archive.port), ct_landing(), method="c-move",
                           calling=CallingNode(port=__import__("peers").free_port()), timeout=1)
        assert info.value.status is None
    finally:
        archive.close()


def test_cancel_set_before_the_start_asks_nothing() -> None:
    import peers

    from dicomnb.sources.retrieve import retrieve_dimse

    cancel = threading.Event()
    cancel.set()
    down = DicomNode("down", "DOWN", "127.0.0.1", peers.free_port())  # connecting would raise ConnectionFailed
    landing = ct_landing()
    for method in ("c-get", "c-move"):
        assert retrieve_dimse(down, landing, method=method, calling=CallingNode(port=peers.free_port()),
                              cancel=cancel) is True
    assert len(landing.missing) == 2 and not landing.errors
    result = dicomnb.retrieve(down, CT_STUDY, cancel=cancel)
    assert result.cancelled and result.retrieved == 0 and result.to_json()["cancelled"] is True
    assert result.message == "cancelled before it started: nothing retrieved from down (c-get)"


def store_request(sop_instance_uid: str) -> bytes:
    from dicomnb.sources import upperlayer as ul

    return ul.encode_command({ul.AFFECTED_SOP_CLASS: CT_IMAGE, ul.COMMAND_FIELD: ul.C_STORE_RQ, ul.MESSAGE_ID: 1,
                              ul.PRIORITY: 0, ul.DATA_SET_TYPE: 0, ul.AFFECTED_SOP_INSTANCE: sop_instance_uid})


def final_response(field: int, status: int) -> bytes:
    from dicomnb.sources import upperlayer as ul

    return ul.encode_command({ul.AFFECTED_SOP_CLASS: GET_MODEL, ul.COMMAND_FIELD: field, ul.RESPONDED_TO: 1,
                              ul.DATA_SET_TYPE: ul.NO_DATA_SET, ul.STATUS: status, ul.REMAINING: 1,
                              ul.COMPLETED: 1, ul.FAILED: 0, ul.WARNING: 0})


def hear_the_end(conn: Any, heard: list[Any]) -> None:
    """Note how the association ends: A-RELEASE-RQ (answered), A-ABORT, or a closed connection."""
    from dicomnb.sources import upperlayer as ul

    try:
        conn.read_message()
        heard.append("a message")
    except ul.Release:
        heard.append("A-RELEASE-RQ")
        conn.send(ul.RELEASE_RP_PDU)
    except ul.PeerAborted:
        heard.append("A-ABORT")
    except (ul.PeerClosed, ul.PeerSilent):
        heard.append("closed")


def one_instance_then_silence(heard: list[Any], answers: bool) -> Any:
    """A C-GET script: CT_small, then silence; what comes next is noted in ``heard`` (a
    C-CANCEL-RQ: its command field, MessageIDBeingRespondedTo and presentation context),
    answered with 0xFE00 when ``answers``; then how the association ends."""
    from dicomnb.sources import upperlayer as ul

    data = data_set_bytes(TEST_FILES / "CT_small.dcm")

    def script(conn: Any, request: Any, release: threading.Event) -> None:
        conn.read_message()  # the C-GET-RQ
        context = next(c for c in request.contexts if c.abstract_syntax == CT_IMAGE
                       and c.transfer_syntax == EXPLICIT_LE)
        conn.send_message(context.id, store_request(CT_INSTANCE), data)
        conn.read_message()  # the C-STORE-RSP
        try:
            cancel_rq = conn.read_message()
        except (ul.PeerAborted, ul.PeerClosed) as exc:
            heard.append("A-ABORT" if isinstance(exc, ul.PeerAborted) else "closed")
            return
        heard.append((cancel_rq.command_field, cancel_rq.number(ul.RESPONDED_TO), cancel_rq.context_id))
        if answers:
            conn.send_message(cancel_rq.context_id, final_response(ul.C_GET_RSP, 0xFE00))
        hear_the_end(conn, heard)

    return script


@pytest.mark.parametrize("answers", [False, True], ids=["silent", "answers-cancel"])
def test_cancel_during_silence_c_get(test_files: Path, answers: bool) -> None:
    """One instance, then silence; the cancel comes in the silence. Silent still: cut off at the
    deadline; answering the C-CANCEL with 0xFE00: released at once."""
    from dicomnb.sources import upperlayer as ul
    from dicomnb.sources.retrieve import CANCEL_GRACE, retrieve_dimse

    ds = pydicom.dcmread(test_files / "CT_small.dcm")
    heard: list[Any] = []
    archive = RawArchive(one_instance_then_silence(heard, answers))
    cancel = threading.Event()
    set_at: list[float] = []

    def later() -> None:
        set_at.append(time.monotonic())
        cancel.set()

    landing = ct_landing()
    landing.progress = lambda done, total: threading.Timer(0.3, later).start()
    try:
        assert retrieve_dimse(DicomNode("raw", "RAW", "127.0.0.1", archive.port), landing, timeout=10,
                              sop_classes=[CT_IMAGE], cancel=cancel) is True
        took = time.monotonic() - set_at[0]
    finally:
        archive.close()
    assert heard == [(ul.C_CANCEL_RQ, 1, 1), "A-RELEASE-RQ" if answers else "A-ABORT"]
    assert took < 0.5 if answers else CANCEL_GRACE - 0.1 < took < CANCEL_GRACE + 0.5, took
    assert landing.missing == ("1.2.3.4.5.6",) and pydicom.dcmread(landing.records[CT_INSTANCE].path) == ds
    assert not landing.errors and not retrieve_threads()


def test_a_download_jobs_pause_reaches_a_silent_archive_at_once(test_files: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A download job's pause (a CancelEvent) wakes the retrieve when it is set: with nothing
    arriving, the C-CANCEL does not wait for a look at the event (made a minute apart here)."""
    from dicomnb.core.downloads import CancelEvent
    from dicomnb.sources import retrieve as sr
    from dicomnb.sources import upperlayer as ul

    monkeypatch.setattr(sr, "_WATCH", 60.0)
    heard: list[Any] = []
    archive = RawArchive(one_instance_then_silence(heard, answers=True))
    cancel = CancelEvent()
    landing = ct_landing()
    landing.progress = lambda done, total: threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    try:
        assert sr.retrieve_dimse(DicomNode("raw", "RAW", "127.0.0.1", archive.port), landing, timeout=10,
                                 sop_classes=[CT_IMAGE], cancel=cancel) is True
        took = time.monotonic() - started
    finally:
        archive.close()
    assert heard == [(ul.C_CANCEL_RQ, 1, 1), "A-RELEASE-RQ"]
    assert took < 5, took  # not the minute between two looks, nor the 10 s timeout
    assert landing.missing == ("1.2.3.4.5.6",) and not retrieve_threads()


@pytest.mark.integration
@pytest.mark.parametrize("answers", [False, True], ids=["silent", "answers-cancel"])
def test_cancel_over_tls(tmp_path: Path, answers: bool) -> None:
    """Over TLS only the worker thread writes (OpenSSL connections are not for two threads).
    Cancelled as an instance lands, the worker sends the C-CANCEL after it and the archive's
    0xFE00 ends it; cancelled in a silence, nothing can be sent: it is cut off at the deadline."""
    require_tool("openssl")
    import peers

    from dicomnb.sources import upperlayer as ul
    from dicomnb.sources.retrieve import CANCEL_GRACE, retrieve_dimse

    certificates = peers.make_test_ca(tmp_path / "ca")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(certificates["server"], certificates["server_key"])
    heard: list[Any] = []
    archive = RawArchive(one_instance_then_silence(heard, answers), tls=server)
    cancel = threading.Event()
    set_at: list[float] = []

    def now() -> None:
        set_at.append(time.monotonic())
        cancel.set()

    landing = ct_landing()
    landing.progress = (lambda done, total: now()) if answers else (
        lambda done, total: threading.Timer(0.3, now).start())
    node = DicomNode("raw", "RAW", "127.0.0.1", archive.port, tls_ca=str(certificates["ca"]))
    try:
        assert retrieve_dimse(node, landing, timeout=10, sop_classes=[CT_IMAGE], cancel=cancel) is True
        took = time.monotonic() - set_at[0]
    finally:
        archive.close()
    assert heard == ([(ul.C_CANCEL_RQ, 1, 1), "A-RELEASE-RQ"] if answers else ["closed"])
    assert took < 0.5 if answers else CANCEL_GRACE - 0.1 < took < CANCEL_GRACE + 0.5, took
    assert CT_INSTANCE in landing.records and not retrieve_threads()


def test_cancel_during_silence_c_move() -> None:
    import peers

    from dicomnb.sources import upperlayer as ul
    from dicomnb.sources.retrieve import CANCEL_GRACE, retrieve_dimse

    heard: list[Any] = []

    def silent(conn: Any, request: Any, release: threading.Event) -> None:
        conn.read_message()  # the C-MOVE-RQ
        cancel_rq = conn.read_message()
        heard.append((cancel_rq.command_field, cancel_rq.number(ul.RESPONDED_TO)))
        hear_the_end(conn, heard)

    archive = RawArchive(silent)
    cancel = threading.Event()
    calling = CallingNode(port=peers.free_port())
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    try:
        assert retrieve_dimse(DicomNode("raw", "RAW", "127.0.0.1", archive.port), ct_landing(), method="c-move",
                              calling=calling, timeout=10, cancel=cancel) is True
        took = time.monotonic() - started - 0.3
    finally:
        archive.close()
    assert heard == [(ul.C_CANCEL_RQ, 1), "A-ABORT"]
    assert took < CANCEL_GRACE + 0.5, took
    assert not retrieve_threads()
    with socket.create_server(("127.0.0.1", calling.port)):  # our Storage SCP is gone
        pass


@pytest.mark.parametrize("method", ["c-get", "c-move"])
def test_cancel_while_the_association_is_set_up(silent_peer: Any, method: str) -> None:
    """An archive that never answers the association request: no request to cancel, cut off at the deadline."""
    import peers

    from dicomnb.sources.retrieve import CANCEL_GRACE, retrieve_dimse

    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    landing = ct_landing()
    assert retrieve_dimse(DicomNode("mute", "MUTE", "127.0.0.1", silent_peer.port), landing, method=method,
                          calling=CallingNode(port=peers.free_port()), timeout=10, cancel=cancel) is True
    assert time.monotonic() - started - 0.3 < CANCEL_GRACE + 0.5
    assert len(landing.missing) == 2 and not retrieve_threads()


# --- Command line ---------------------------------------------------------------------------------

@pytest.mark.integration
def test_cli_retrieve(orthanc: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dicomnb.add_node("pacs", orthanc.aet, orthanc.host, orthanc.port, wado_url=orthanc.wado_url)
    assert cli.main(["retrieve", "pacs", "--study", CT_STUDY, "--json", "--dest", str(tmp_path / "d")]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["retrieved"] == 1 and answer["missing"] == []
    (instance,) = answer["instances"]
    assert instance["SOPInstanceUID"] == CT_INSTANCE and instance["SeriesInstanceUID"] == CT_SERIES
    assert Path(instance["path"]).is_file() and len(list((tmp_path / "d").rglob("*.dcm"))) == 1
    NodeStore.load().set_calling(mover(orthanc))
    study, series, _ = study_of("MR_small.dcm")
    assert cli.main(["retrieve", "pacs", "--study", study, "--series", series, "--method", "c-move"]) == 0
    assert capsys.readouterr().out.startswith("1 instance retrieved from pacs (c-move)")
    assert cli.main(["retrieve", "pacs", "--study", study, "--method", "wado-uri"]) == 0
    assert "already in the store" in capsys.readouterr().out


@pytest.mark.parametrize("args", [
    ["retrieve", "nowhere", "--study", "1.2.3"],
    ["retrieve", "pacs"],
    ["retrieve", "pacs", "--study", "1.2.3", "--method", "ftp"],
    ["retrieve", "pacs", "--study", "1.2.3", "--method", "wado-uri"],
    ["retrieve", "pacs", "--study", "1.2.3", "--dest", "A_FILE"],
])
def test_cli_retrieve_bad_arguments_exit_2(args: list[str], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    dicomnb.add_node("pacs", "PACS", "127.0.0.1", 104)
    (tmp_path / "A_FILE").write_text("")
    args = [str(tmp_path / a) if a == "A_FILE" else a for a in args]
    try:
        code = cli.main(args)
    except SystemExit as exc:  # argparse's own checks
        code = exc.code  # type: ignore[assignment]
    assert code == cli.EXIT_USAGE
    assert capsys.readouterr().err


def test_cli_retrieve_network_failure_exits_4(capsys: pytest.CaptureFixture[str]) -> None:
    import peers

    port = peers.free_port()
    with pytest.raises(ConnectionFailed, match="connection refused"):
        dicomnb.retrieve(DicomNode("down", "DOWN", "127.0.0.1", port), "1.2.3", timeout=5)
    dicomnb.add_node("down", "DOWN", "127.0.0.1", port)
    assert cli.main(["retrieve", "down", "--study", "1.2.3"]) == cli.EXIT_NETWORK
    assert "connection refused" in capsys.readouterr().err
