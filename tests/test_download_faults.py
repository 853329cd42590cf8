"""Downloads against archives that crash, downloads whose process is killed, and pauses.

Real archives of their own (:class:`peers.RestartableServer`: Orthanc for every method, and
dcmqrscp for C-GET and C-MOVE) hold one study of :data:`SERIES` series of
:data:`PER_SERIES` CT instances. Each scenario ends the same way: every job complete, the
store holding exactly one file per instance (no duplicate, nothing half-written) and each
file byte for byte the archive's copy (the whole file for WADO-URI and WADO-RS, which serve
the file as stored; the data set after the file meta information for C-GET and C-MOVE,
whose files carry our own meta header); and, as the archive's log says what it sent,
nothing sent twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import missing_peer, require_module, require_tool
from netcommon import collect_garbage  # noqa: F401 - autouse fixture
from pydicom.uid import generate_uid
from test_retrieve import data_set_bytes, mover

import dicomnb
from dicomnb.core.errors import RetrieveIncomplete, SourceError
from dicomnb.core.nodes import NodeStore
from dicomnb.core.store import instance_path

SERIES, PER_SERIES = 3, 100
#: (archive, method): every method each archive offers.
METHODS = [("orthanc", "c-get"), ("orthanc", "c-move"), ("orthanc", "wado-uri"), ("orthanc", "wado-rs"),
           ("dcmqrscp", "c-get"), ("dcmqrscp", "c-move")]
HTTP_METHODS = ("wado-uri", "wado-rs")
#: The lopsided study's series: one listed and fetched at once, one Orthanc takes long to list
#: (its DICOMweb plugin reads every instance it lists: ~2 ms each here).
SMALL_SERIES, LARGE_SERIES = 3, 300
NODE = "pacs"
#: Seconds allowed for a download or a command to end.
DEADLINE = 60


@dataclass
class Study:
    """A study an archive holds, and the files it was loaded with."""

    uid: str
    originals: dict[str, Path]       # SOP Instance UID → the file the archive was loaded with
    series: dict[str, str]           # SOP Instance UID → SeriesInstanceUID

    def store_paths(self) -> dict[str, Path]:
        """SOP Instance UID → where the instance lands in this test's store."""
        return {sop: instance_path(self.uid, self.series[sop], sop) for sop in self.originals}


@dataclass
class Archive:
    """A restartable archive of the module's, and the studies it holds."""

    server: Any                      # peers.RestartableServer
    study: Study                     # SERIES series of PER_SERIES instances
    lopsided: Study | None = None    # Orthanc's: SMALL_SERIES and LARGE_SERIES instances


def write_study(folder: Path, sizes: tuple[int, ...]) -> Study:
    """A study of CT_small copies (``peers.ct_copies``), series of ``sizes`` instances, as files."""
    import peers

    folder.mkdir(parents=True)
    uid, originals, series = generate_uid(), {}, {}
    for number, size in enumerate(sizes):
        for ds in peers.ct_copies(uid, 1, size):
            originals[ds.SOPInstanceUID] = folder / f"{number}-{ds.InstanceNumber - 1}.dcm"
            series[ds.SOPInstanceUID] = ds.SeriesInstanceUID
            ds.save_as(originals[ds.SOPInstanceUID], enforce_file_format=True)
    return Study(uid, originals, series)


@contextlib.contextmanager
def archive_of(kind: str, root: Path) -> Iterator[Archive]:
    require_module("pynetdicom")
    import peers

    if kind == "orthanc":
        require_tool("Orthanc")
        if not peers.ORTHANC_PLUGIN.exists():
            missing_peer(f"the DICOMweb plugin {peers.ORTHANC_PLUGIN} is missing "
                         "(apt-get install orthanc-dicomweb)")
    else:
        require_tool("dcmqrscp")
        require_tool("dcmqridx")
    archive = Archive(None, write_study(root / "study", (PER_SERIES,) * SERIES))
    if kind == "orthanc":
        archive.lopsided = write_study(root / "lopsided", (SMALL_SERIES, LARGE_SERIES))
    with peers.RestartableServer(kind, root / "server") as server:
        archive.server = server
        peer = server.start()
        originals = {**archive.study.originals, **(archive.lopsided.originals if archive.lopsided else {})}
        server.load(list(originals.values()))
        if kind == "orthanc":
            assert_orthanc_keeps_the_files(peer, originals)
        yield archive


def assert_orthanc_keeps_the_files(peer: Any, originals: dict[str, Path]) -> None:
    """Orthanc serves every instance as the file it was sent: comparing with the originals
    is comparing with the archive's copy (dcmqrscp's copies are the originals themselves)."""
    base = f"http://127.0.0.1:{peer.http_port}"
    with urllib.request.urlopen(f"{base}/instances?expand", timeout=30) as response:
        held = {i["MainDicomTags"]["SOPInstanceUID"]: i["ID"] for i in json.loads(response.read())}
    assert set(held) == set(originals)
    for sop, orthanc_id in held.items():
        with urllib.request.urlopen(f"{base}/instances/{orthanc_id}/file", timeout=30) as response:
            assert response.read() == originals[sop].read_bytes(), sop


@pytest.fixture(scope="module")
def orthanc_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    with archive_of("orthanc", tmp_path_factory.mktemp("orthanc-faults")) as archive:
        yield archive


@pytest.fixture(scope="module")
def dcmqrscp_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    with archive_of("dcmqrscp", tmp_path_factory.mktemp("dcmqrscp-faults")) as archive:
        yield archive


@pytest.fixture
def archive(request: pytest.FixtureRequest, server: str) -> Archive:
    """The archive of the test's parameter, running (a test before may have left it killed)."""
    held: Archive = request.getfixturevalue(f"{server}_archive")
    held.server.start()
    return held


def save_node(archive: Archive, method: str) -> str:
    """Save the archive as a node (DICOMweb for WADO-RS), and ourselves as the C-MOVE destination it knows."""
    peer = archive.server.peer
    if method == "wado-rs":
        dicomnb.add_node(NODE, dicomweb=peer.dicomweb_url)
    else:
        dicomnb.add_node(NODE, peer.aet, peer.host, peer.port, wado_url=peer.wado_url)
    NodeStore.load().set_calling(mover(peer))
    return NODE


def store_of(study: Study) -> Path:
    """The test's store (``<cache_dir>/store``)."""
    return instance_path(study.uid, "", "").parents[2]


def landed(study: Study) -> set[str]:
    """The instances whose file is in the store (and nothing else is: no stray file)."""
    sop_of = {path: sop for sop, path in study.store_paths().items()}
    store = store_of(study)
    found = store.rglob("*") if store.is_dir() else iter(())
    files = [p for p in found if p.is_file() and not p.name.startswith(".part-")]
    strays = [p for p in files if p not in sop_of]
    assert not strays, strays
    return {sop_of[p] for p in files}


def assert_store_is_the_archive(study: Study, method: str) -> None:
    """One file per instance, none half-written, each the archive's copy byte for byte."""
    assert not list(store_of(study).rglob(".part-*"))
    never = set(study.originals) - landed(study)
    assert not never, f"{len(never)} of the study's {len(study.originals)} instances are not in the store"
    for sop, path in study.store_paths().items():
        original = study.originals[sop]
        if method in HTTP_METHODS:
            assert path.read_bytes() == original.read_bytes(), sop
        else:
            assert data_set_bytes(path) == data_set_bytes(original), sop
            assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID == sop


def assert_jobs_match_the_store(study: Study, states: set[str]) -> list[Any]:
    """One job per series, in ``states``, each counting as missing what its series lacks in the store."""
    jobs = dicomnb.downloads()
    assert len(jobs) == SERIES and {j.series_uid for j in jobs} == set(study.series.values())
    there = landed(study)
    for job in jobs:
        wanted = {sop for sop, series in study.series.items() if series == job.series_uid}
        assert job.total == len(wanted) == PER_SERIES
        assert job.state in states, job
        assert job.missing == len(wanted - there), job
    return jobs


def jobs_made() -> int:
    """Download jobs saved so far (one per series, made as each series is listed)."""
    return len(list(dicomnb.downloads.folder().glob("*.json")))


def assert_sent_once(archive: Archive, since: tuple[int, int], instances: set[str]) -> None:
    """Since the mark ``since``, the archive sent each of ``instances`` exactly once, and nothing else."""
    if archive.server.http_port is None:  # dcmqrscp logs no UIDs: count
        assert archive.server.count_sent(since) == len(instances)
        return
    sent = archive.server.instances_sent(since)
    twice = {sop: times for sop, times in sent.items() if times > 1}
    assert not twice, f"{len(twice)} instances sent more than once: {sorted(twice.items())[:3]}..."
    assert set(sent) == instances


# --- The archive dies half-way ------------------------------------------------------------------

@contextlib.contextmanager
def killing_half_way(archive: Archive, method: str) -> Iterator[tuple[Callable[[int, int], None], list[int]]]:
    """A progress callback for the retrieve, and the list that says when the archive was killed.

    Every method sends an instance only once the one before is answered (or a few requests
    ahead: WADO-URI and WADO-RS ask instance by instance): half landed is half sent, and the
    callback kills the archive there, in the thread landing instances, once every series has
    its job (a kill while a series is being listed is another test's).
    """
    expected = len(archive.study.originals)
    killed_at: list[int] = []

    def progress(done: int, total: int) -> None:
        if done >= expected // 2 and not killed_at and jobs_made() == SERIES:
            killed_at.append(done)
            archive.server.kill()

    yield progress, killed_at


@pytest.mark.integration
@pytest.mark.parametrize(("server", "method"), METHODS)
def test_archive_killed_half_way_then_resumed(archive: Archive, method: str) -> None:
    name = save_node(archive, method)
    study = archive.study
    expected = len(study.originals)
    with killing_half_way(archive, method) as (progress, killed_at):
        with pytest.raises(RetrieveIncomplete) as info:
            dicomnb.retrieve(name, study.uid, method=method, progress=progress, timeout=10)
    assert killed_at, "the retrieve ended before the archive was killed"
    error = info.value
    assert isinstance(error.__cause__, SourceError), repr(error.__cause__)
    there = landed(study)
    assert expected // 2 <= len(there) < expected
    assert len(error.missing) == expected - len(there)
    assert set(error.missing) == set(study.originals) - there
    assert error.result is not None and {r.SOPInstanceUID for r in error.result.instances} == there
    jobs = assert_jobs_match_the_store(study, {"incomplete", "complete"})
    assert sum(j.missing for j in jobs) == len(error.missing)
    assert all(j.state == "incomplete" for j in jobs if j.missing)
    # the archive comes back on the same storage and ports: resuming fetches only what is missing
    archive.server.start()
    since = archive.server.mark()
    dicomnb.downloads.resume()
    assert dicomnb.downloads.wait(timeout=DEADLINE)
    jobs = assert_jobs_match_the_store(study, {"complete"})
    assert all(j.missing == 0 and j.done == j.total for j in jobs)
    assert_store_is_the_archive(study, method)
    assert_sent_once(archive, since, set(error.missing))


# --- The process running the download dies half-way --------------------------------------------

def run_dicomnb(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dicomnb", *args], env=env, capture_output=True, text=True,
                          timeout=DEADLINE, check=False)


def downloads_json(env: dict[str, str]) -> list[dict[str, Any]]:
    """The jobs ``dicomnb downloads --json`` lists."""
    listed = run_dicomnb("downloads", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    return list(json.loads(listed.stdout)["jobs"])


@pytest.mark.integration
@pytest.mark.parametrize(("server", "method"), METHODS)
def test_download_process_killed_half_way_then_resumed_by_another(archive: Archive, method: str,
                                                                  isolated_cache: Path,
                                                                  isolated_config: Path) -> None:
    name = save_node(archive, method)
    study = archive.study
    expected = len(study.originals)
    env = {**os.environ, "DICOMNB_CACHE_DIR": str(isolated_cache), "DICOMNB_CONFIG_DIR": str(isolated_config)}
    command = [sys.executable, "-m", "dicomnb", "retrieve", name, "--study", study.uid, "--method", method]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + DEADLINE
        # every series has its job (WADO-RS lists series by series), half the study is in the store
        while (jobs_made() < SERIES or len(landed(study)) < expected // 2) and process.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.002)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        _, stderr = process.communicate(timeout=DEADLINE)
    assert process.returncode == -signal.SIGKILL, f"it ended before it was killed: {stderr.decode()}"
    there = landed(study)
    assert 0 < len(there) < expected
    jobs = downloads_json(env)
    assert len(jobs) == SERIES and {j["series_uid"] for j in jobs} == set(study.series.values())
    assert all(j["total"] == PER_SERIES for j in jobs)
    # those it was running when it died are interrupted (one whose last instance had just
    # landed may be too); a series it had finished stays complete
    assert "interrupted" in {j["state"] for j in jobs}, jobs
    for job in jobs:
        lacking = {sop for sop, series in study.series.items() if series == job["series_uid"]} - there
        assert job["state"] in ({"interrupted"} if lacking else {"interrupted", "complete"}), job
    # a new process resumes them: only what is missing is sent, once
    since = archive.server.mark()
    resumed = run_dicomnb("downloads", "resume", env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert {j["state"] for j in downloads_json(env)} == {"complete"}
    assert_jobs_match_the_store(study, {"complete"})
    assert_store_is_the_archive(study, method)
    assert_sent_once(archive, since, set(study.originals) - there)


# --- Pause, then resume: nothing is sent twice ------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize(("server", "method"), METHODS)
def test_pause_then_resume_sends_nothing_twice(archive: Archive, method: str) -> None:
    name = save_node(archive, method)
    study = archive.study
    expected = len(study.originals)
    since = archive.server.mark()
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        # once every series has its job (WADO-RS lists series by series): pausing while a
        # series is being listed is another test's
        if done >= 0.4 * expected and total == expected:
            cancel.set()

    paused = dicomnb.retrieve(name, study.uid, method=method, progress=progress, cancel=cancel, timeout=10)
    assert paused.cancelled and 0 < len(paused.missing) <= 0.6 * expected
    assert set(paused.missing) == set(study.originals) - landed(study)
    jobs = assert_jobs_match_the_store(study, {"paused", "complete"})
    assert all(j.state == "paused" for j in jobs if j.missing)
    dicomnb.downloads.resume()
    assert dicomnb.downloads.wait(timeout=DEADLINE)
    assert_jobs_match_the_store(study, {"complete"})
    assert_store_is_the_archive(study, method)
    assert_sent_once(archive, since, set(study.originals))


# --- WADO-RS: a series still being listed when the archive dies, or when paused ------------------

@pytest.mark.integration
@pytest.mark.parametrize("server", ["orthanc"])
def test_archive_killed_while_a_series_is_listed_then_resumed(archive: Archive) -> None:
    """The small series is listed, fetched and complete while Orthanc still lists the large one
    (~0.6 s): it dies then. Something arrived, so the retrieve says what is incomplete, and once
    the archive is back, resuming finishes the study."""
    name = save_node(archive, "wado-rs")
    study = archive.lopsided
    assert study is not None
    killed_at: list[int] = []

    def progress(done: int, total: int) -> None:
        if done == total == SMALL_SERIES and not killed_at:
            killed_at.append(done)
            archive.server.kill()

    with pytest.raises(RetrieveIncomplete) as info:
        dicomnb.retrieve(name, study.uid, progress=progress, timeout=10)
    assert killed_at and isinstance(info.value.__cause__, SourceError), repr(info.value.__cause__)
    assert "1 series could not be listed" in str(info.value)
    assert len(landed(study)) == SMALL_SERIES
    # the series whose listing was cut off has a job all the same, which lists it when resumed
    statuses = sorted(dicomnb.downloads(), key=lambda s: s.listed)
    assert [(s.state, s.listed, s.done) for s in statuses] == [("incomplete", False, 0),
                                                                ("complete", True, SMALL_SERIES)]
    assert statuses[0].text == "incomplete: not listed yet" and "not listed" in statuses[0].error
    archive.server.start()
    dicomnb.downloads.resume()
    assert dicomnb.downloads.wait(timeout=DEADLINE)
    assert_store_is_the_archive(study, "wado-rs")


@pytest.mark.integration
@pytest.mark.parametrize("server", ["orthanc"])
def test_pause_while_a_series_is_listed_then_resume(archive: Archive) -> None:
    """Paused once the small series is complete, while Orthanc still lists the large one: the
    result must not say the study arrived whole, and resuming finishes it."""
    name = save_node(archive, "wado-rs")
    study = archive.lopsided
    assert study is not None
    cancel = threading.Event()

    def progress(done: int, total: int) -> None:
        if done == total == SMALL_SERIES:
            cancel.set()

    paused = dicomnb.retrieve(name, study.uid, progress=progress, cancel=cancel, timeout=10)
    assert paused.cancelled and len(landed(study)) == SMALL_SERIES
    dicomnb.downloads.resume()
    assert dicomnb.downloads.wait(timeout=DEADLINE)
    assert_store_is_the_archive(study, "wado-rs")
    assert not paused.complete, f"paused with {LARGE_SERIES} instances to come, it says: {paused.message}"
