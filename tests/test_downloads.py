"""The download manager: one job per series, preview order, state on disk, resume from another process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from netcommon import node_of

import dicomnb
from dicomnb.core.downloads import SeriesJob, preview_order
from dicomnb.core.errors import DownloadError, InputError
from dicomnb.core.retrieval import Expected
from dicomnb.core.store import instance_path


@pytest.mark.parametrize("count", range(0, 40))
def test_preview_order_is_first_last_middle_then_halving(count: int) -> None:
    order = preview_order(count)
    assert sorted(order) == list(range(count))  # every instance once
    if count >= 3:
        assert order[:3] == [0, count - 1, (count - 1) // 2]
    assert preview_order(9) == [0, 8, 4, 2, 6, 1, 3, 5, 7]


def test_jobs_are_sorted_by_instance_number_then_put_in_preview_order() -> None:
    instances = [Expected("1.2", "1.2.3", f"1.2.3.{n}") for n in (5, 1, 3, 2, 4)]
    job = dicomnb.downloads.add(node="n", method="c-get", study_uid="1.2", series_uid="1.2.3", instances=instances,
                                numbers={f"1.2.3.{n}": n for n in range(1, 6)})
    assert [e.sop_instance_uid for e in job.instances] == ["1.2.3.1", "1.2.3.5", "1.2.3.3", "1.2.3.2", "1.2.3.4"]
    # without numbers for all, the listing's order stands
    other = dicomnb.downloads.add(node="n", method="c-get", study_uid="1.2", series_uid="1.2.4",
                                  instances=instances[:3], numbers={"1.2.3.5": 5})
    assert [e.sop_instance_uid for e in other.instances] == ["1.2.3.5", "1.2.3.3", "1.2.3.1"]


def test_state_is_saved_atomically_and_a_dead_owner_means_interrupted(isolated_cache: Path) -> None:
    instances = [Expected("1.2", "1.2.3", f"1.2.3.{n}", "1.2.840.10008.5.1.4.1.1.2") for n in range(3)]
    job = dicomnb.downloads.add(node="orthanc", method="wado-uri", study_uid="1.2", series_uid="1.2.3",
                                instances=instances, dest=str(isolated_cache / "out"), description="CT 1: head")
    saved = json.loads((isolated_cache / "downloads" / f"{job.id}.json").read_text())
    assert saved["state"] == "paused" and saved["dest"] == str(isolated_cache / "out")
    assert [sop for sop, _ in saved["instances"]] == ["1.2.3.0", "1.2.3.2", "1.2.3.1"]
    assert not [p for p in (isolated_cache / "downloads").iterdir() if p.name.startswith(".part-")]
    # as a process that died while running it left it
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    saved.update(state="running", owner=int(child.stdout))
    (isolated_cache / "downloads" / f"{job.id}.json").write_text(json.dumps(saved))
    fresh = dicomnb.downloads.__class__()  # a new process's view: nothing live
    (status,) = fresh()
    assert (status.id, status.state, status.done, status.total, status.missing) == (job.id, "interrupted", 0, 3, 3)
    assert status.description == "CT 1: head" and status.dest == str(isolated_cache / "out")
    # an unreadable state file is skipped, not fatal
    (isolated_cache / "downloads" / "broken.json").write_text("{not json")
    assert [s.id for s in fresh()] == [job.id]


def test_unknown_ids_and_bad_settings_are_typed_errors() -> None:
    with pytest.raises(DownloadError, match="no download 'nope' .*dicomnb downloads"):
        dicomnb.downloads.resume(["nope"])
    with pytest.raises(DownloadError, match="series_parallel must be a whole number >= 1"):
        dicomnb.downloads.series_parallel = 0
    assert dicomnb.downloads.series_parallel == 3 and dicomnb.downloads.instance_parallel == 4


# --- against Orthanc ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str, dict[str, Path]]]:
    """An Orthanc of its own holding one study of 3 series × 9 instances."""
    import peers
    from conftest import require_module, require_tool

    require_tool("Orthanc")
    require_module("pynetdicom")
    folder = tmp_path_factory.mktemp("downloads-study")
    uid, files = peers.write_ct_study(folder, series=3, per_series=9)
    with peers.run_orthanc(tmp_path_factory.mktemp("downloads-orthanc"), load=False) as orthanc:
        assert peers.orthanc_upload(orthanc.http_port, list(files.values())) == {}
        yield orthanc, uid, files


def saved_node(peer: Any) -> str:
    node = node_of(peer, name="orthanc-dl")
    dicomnb.add_node(node.name, aet=node.aet, host=node.host, port=node.port, wado_url=node.wado_url, replace=True)
    return node.name


@pytest.mark.integration
def test_a_retrieve_is_one_job_per_series_and_a_preview_comes_first(study: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    peer, uid, files = study
    numbers = {sop: int(pydicom.dcmread(path, stop_before_pixels=True).InstanceNumber) for sop, path in files.items()}
    arrived: list[Any] = []
    file_items = dicomnb.downloads.file_items

    def filed(items: list[Any]) -> object:  # the catalog's filing, in the order instances land
        arrived.extend(items)
        return file_items(items)

    monkeypatch.setattr(dicomnb.downloads, "file_items", filed)
    dicomnb.downloads.instance_parallel = 1  # one at a time: the arrival order is the fetch order
    try:
        result = dicomnb.retrieve(saved_node(peer), uid, method="wado-uri")
    finally:
        dicomnb.downloads.instance_parallel = 4
    assert result.complete and result.retrieved == 27 and len(result.jobs) == 3
    statuses = {s.id: s for s in dicomnb.downloads()}
    assert set(statuses) == set(result.jobs)
    assert sorted(s.description for s in statuses.values()) == ["CT 1", "CT 2", "CT 3"]
    assert all(s.text.startswith("complete: 9 instances, ") and s.missing == 0 for s in statuses.values())
    # within each series: first, last, middle, then halving (instance numbers 1..9)
    by_series: dict[str, list[int]] = {}
    for row in arrived:
        by_series.setdefault(row.SeriesInstanceUID, []).append(numbers[row.SOPInstanceUID])
    for order in by_series.values():
        assert order[:3] == [1, 9, 5] and sorted(order) == list(range(1, 10))
    # the first finished instance of each series is known at once, for a viewer
    for status in statuses.values():
        assert status.first_path and numbers[pydicom.dcmread(status.first_path).SOPInstanceUID] == 1


@pytest.mark.integration
@pytest.mark.parametrize("method", ["c-get", "wado-uri"])
def test_pause_then_resume_into_the_same_dest(study: Any, method: str, tmp_path: Path, isolated_cache: Path) -> None:
    peer, uid, files = study
    name = saved_node(peer)
    dicomnb.downloads.series_parallel = 1
    cancel = threading.Event()

    calls: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        if done >= 5:
            cancel.set()

    try:
        paused = dicomnb.retrieve(name, uid, method=method, dest=tmp_path / "out", cancel=cancel, progress=progress)
    finally:
        dicomnb.downloads.series_parallel = 3
    assert paused.cancelled and 5 <= paused.retrieved < 27 and paused.missing
    states = sorted(s.state for s in dicomnb.downloads())
    assert "paused" in states and "complete" not in states[1:]
    # resume from Python: only the missing instances are fetched, into the same dest
    resumed = dicomnb.downloads.resume()
    assert {j.id for j in resumed} <= set(paused.jobs)
    assert dicomnb.downloads.wait(resumed, timeout=60)
    assert all(s.state == "complete" for s in dicomnb.downloads())
    assert sum(job.result.retrieved for job in resumed if job.result) == 27 - paused.retrieved
    # the retrieve's progress callback goes on reporting the resumed jobs, over the whole study
    assert calls[-1] == (27, 27) and all(total == 27 for _, total in calls if _ > 5)
    stored = sorted(p for p in (isolated_cache / "store").rglob("*") if p.is_file())
    copied = sorted(p for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert len(stored) == len(copied) == 27 and all(p.suffix == ".dcm" for p in stored + copied)
    assert {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in copied} == set(files)


@pytest.mark.integration
def test_cancel_forgets_the_job_and_keeps_what_arrived(study: Any, isolated_cache: Path) -> None:
    peer, uid, files = study
    cancel = threading.Event()
    dicomnb.downloads.series_parallel = 1
    try:
        paused = dicomnb.retrieve(saved_node(peer), uid, method="wado-uri", cancel=cancel,
                                  progress=lambda done, total: done >= 3 and cancel.set())
    finally:
        dicomnb.downloads.series_parallel = 3
    kept = {r.SOPInstanceUID for r in paused.instances}
    assert kept and all(sop in dicomnb.catalog for sop in kept)
    gone = dicomnb.downloads.cancel(paused.jobs)
    assert {j.id for j in gone} == set(paused.jobs) and dicomnb.downloads() == []
    assert not list((isolated_cache / "downloads").glob("*.json"))
    assert all(sop in dicomnb.catalog for sop in kept)
    assert all(instance_path(uid, r.SeriesInstanceUID, r.SOPInstanceUID).is_file() for r in paused.instances)


def run_cli(*args: str, cache: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DICOMNB_CACHE_DIR": str(cache), "DICOMNB_CONFIG_DIR": str(config)}
    return subprocess.run([sys.executable, "-m", "dicomnb", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.integration
def test_the_command_line_lists_resumes_and_cancels(study: Any, tmp_path: Path, isolated_cache: Path) -> None:
    peer, uid, files = study
    config = Path(os.environ["DICOMNB_CONFIG_DIR"])
    name = saved_node(peer)
    # a paused retrieve left by this process, finished by a shell, into its --dest
    cancel = threading.Event()
    dicomnb.downloads.series_parallel = 1
    try:
        paused = dicomnb.retrieve(name, uid, method="c-get", dest=tmp_path / "out", cancel=cancel,
                                  progress=lambda done, total: done >= 4 and cancel.set())
    finally:
        dicomnb.downloads.series_parallel = 3
    listed = run_cli("downloads", "--json", cache=isolated_cache, config=config)
    assert listed.returncode == 0, listed.stderr
    jobs = {job["id"]: job for job in json.loads(listed.stdout)["jobs"]}
    assert set(jobs) == set(paused.jobs)
    assert sum(job["missing"] for job in jobs.values()) == len(paused.missing)
    assert {job["state"] for job in jobs.values()} <= {"paused", "complete"}
    table = run_cli("downloads", cache=isolated_cache, config=config)
    assert table.stdout.splitlines()[0].split() == ["ID", "STATE", "DONE", "MISSING", "NODE", "METHOD", "SERIES"]
    resumed = run_cli("downloads", "resume", cache=isolated_cache, config=config)
    assert resumed.returncode == 0, resumed.stderr
    # not a terminal: one line per series as it ends
    assert sum(": complete: 9 instances, " in line for line in resumed.stderr.splitlines()) >= 1
    assert len([p for p in (tmp_path / "out").rglob("*.dcm")]) == 27
    after = json.loads(run_cli("downloads", "--json", cache=isolated_cache, config=config).stdout)["jobs"]
    assert [job["state"] for job in after] == ["complete"] * 3
    # unknown IDs: a usage error naming the known ones
    wrong = run_cli("downloads", "retry-missing", "nope", cache=isolated_cache, config=config)
    assert wrong.returncode == 2 and "no download 'nope'" in wrong.stderr
    cleared = run_cli("downloads", "clear", cache=isolated_cache, config=config)
    assert cleared.returncode == 0 and "forgot 3 complete jobs" in cleared.stdout
    assert json.loads(run_cli("downloads", "--json", cache=isolated_cache, config=config).stdout) == {"jobs": []}


@pytest.mark.integration
def test_a_resume_starts_the_series_with_nothing_landed_first(study: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every series gets its preview soonest; the one partly there (asked for instance by instance,
    which the archive looks up before sending anything) comes last."""
    peer, uid, files = study
    cancel = threading.Event()

    def pause(done: int, total: int) -> None:
        if done >= 4 and not cancel.is_set():  # once: it goes on reporting the resumed jobs
            cancel.set()
            dicomnb.downloads.pause()

    dicomnb.downloads.series_parallel = dicomnb.downloads.instance_parallel = 1
    try:  # paused in the first series, one instance at a time
        paused = dicomnb.retrieve(saved_node(peer), uid, method="wado-uri", cancel=cancel, progress=pause)
    finally:
        dicomnb.downloads.series_parallel, dicomnb.downloads.instance_parallel = 3, 4
    partly = {r.SeriesInstanceUID for r in paused.instances}
    assert len(partly) == 1 and paused.missing
    arrived: list[str] = []
    file_items = dicomnb.downloads.file_items

    def filed(items: list[Any]) -> object:
        arrived.extend(r.SeriesInstanceUID for r in items if len(items) == 1)  # not those found in the store
        return file_items(items)

    monkeypatch.setattr(dicomnb.downloads, "file_items", filed)
    dicomnb.downloads.series_parallel = 1
    try:
        resumed = dicomnb.downloads.resume()
        assert dicomnb.downloads.wait(resumed, timeout=60)
    finally:
        dicomnb.downloads.series_parallel = 3
    order = list(dict.fromkeys(arrived))
    assert len(order) == 3 and order[-1] in partly and len(arrived) == 27 - len(paused.instances)


RESUME_AND_SHOW = """
import json, dicomnb
jobs = dicomnb.downloads.resume()
assert dicomnb.downloads.wait(jobs, timeout=120)
records = dicomnb.catalog.records()
shown = dicomnb.catalog.dataset(records[0].SOPInstanceUID)
print(json.dumps({"rows": sorted({(r.PatientName, r.StudyDescription) for r in records}),
                  "sops": [r.SOPInstanceUID for r in records],
                  "dataset": [str(shown.PatientName), shown.StudyDescription], "path": records[0].path}))
"""


@pytest.mark.integration
def test_overrides_go_with_the_jobs_and_a_resume_in_another_process_applies_them(
        study: Any, isolated_cache: Path) -> None:
    peer, uid, files = study
    values = {"PatientName": "Doe^Jane", "StudyDescription": "second opinion"}
    cancel = threading.Event()
    dicomnb.downloads.series_parallel = dicomnb.downloads.instance_parallel = 1

    def pause(done: int, total: int) -> None:
        if done >= 4:  # the jobs at once, so that the first series stops before its end
            cancel.set()
            dicomnb.downloads.pause()

    try:  # one instance at a time: the pause comes in the first series, which some instances reached
        paused = dicomnb.retrieve(saved_node(peer), uid, method="wado-uri", cancel=cancel, overrides=values,
                                  progress=pause)
    finally:
        dicomnb.downloads.series_parallel, dicomnb.downloads.instance_parallel = 3, 4
    assert paused.cancelled and 4 <= len(paused.instances) < 9
    assert {(r.PatientName, r.StudyDescription) for r in paused.instances} == {("Doe^Jane", "second opinion")}
    saved = [json.loads(p.read_bytes()) for p in (isolated_cache / "downloads").glob("*.json")]
    assert len(saved) == 3 and all(state["overrides"] == values for state in saved)
    env = {**os.environ, "DICOMNB_CACHE_DIR": str(isolated_cache)}
    child = subprocess.run([sys.executable, "-c", RESUME_AND_SHOW], capture_output=True, text=True, env=env,
                           timeout=180)
    assert child.returncode == 0, child.stderr
    shown = json.loads(child.stdout)
    # every instance, those that landed before the pause (read again from the store) and those
    # after, shows the values
    assert sorted(shown["sops"]) == sorted(files) and shown["rows"] == [["Doe^Jane", "second opinion"]]
    assert shown["dataset"] == ["Doe^Jane", "second opinion"]
    # the files are the archive's, byte for byte
    stored = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p
              for p in (isolated_cache / "store").rglob("*.dcm")}
    assert len(stored) == 27 and all(stored[sop].read_bytes() == files[sop].read_bytes() for sop in files)
    with pytest.raises(InputError, match="UIDs identify"):
        dicomnb.retrieve(saved_node(peer), uid, overrides={"SeriesInstanceUID": "1.2.3"})


@pytest.mark.integration
def test_retrieve_prints_progress_and_keeps_jobs(study: Any, isolated_cache: Path) -> None:
    peer, uid, files = study
    config = Path(os.environ["DICOMNB_CONFIG_DIR"])
    name = saved_node(peer)
    done = run_cli("retrieve", name, "--study", uid, "--method", "wado-uri", cache=isolated_cache, config=config)
    assert done.returncode == 0, done.stderr
    assert "27 instances retrieved from orthanc-dl (wado-uri)" in done.stdout
    ended = [line for line in done.stderr.splitlines() if ": complete: 9 instances, " in line]
    assert len(ended) == 3 and sorted(line.split()[1] for line in ended) == ["CT", "CT", "CT"]
    jobs = json.loads(run_cli("downloads", "--json", cache=isolated_cache, config=config).stdout)["jobs"]
    assert len(jobs) == 3 and all(job["state"] == "complete" and job["total"] == 9 for job in jobs)


def test_a_job_holds_its_series_while_it_runs(isolated_cache: Path) -> None:
    """Two jobs of one series (two destinations) never run at once: the second waits for the lock."""
    from dicomnb.core.downloads import _SeriesLock

    path = isolated_cache / "downloads" / "locks" / "x.lock"
    first, second = _SeriesLock(path), _SeriesLock(path)
    never = threading.Event()
    assert first.acquire(never)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert not second.acquire(stop)  # still held: gave up when told to
    first.release()
    assert second.acquire(never)
    second.release()


def test_a_queued_job_is_written_once_as_it_starts_and_its_pause_reaches_its_fetch(isolated_cache: Path) -> None:
    """A retrieve's job, saved queued as it is made, is not written again when it starts
    (a resume of many jobs writes each once); the fetch hears the pause as it is set."""
    from dicomnb.core.downloads import CancelEvent, DownloadManager

    fetching, told = threading.Event(), threading.Event()

    def fetch(job: SeriesJob, landing: Any, cancel: threading.Event) -> bool:
        assert isinstance(cancel, CancelEvent)
        cancel.subscribe(told.set)
        fetching.set()
        cancel.wait(30)
        return True

    manager = DownloadManager(fetch, lambda items: None)
    instances = [Expected("1.2", "1.2.3", f"1.2.3.{n}", "1.2.840.10008.5.1.4.1.1.2") for n in range(3)]
    job = manager.add(node="orthanc", method="c-get", study_uid="1.2", series_uid="1.2.3", instances=instances,
                      queued=True)
    state = isolated_cache / "downloads" / f"{job.id}.json"
    written = state.stat().st_ino  # each save writes a new file and renames it into place
    manager.start([job])
    assert fetching.wait(10)
    saved = json.loads(state.read_text())
    assert state.stat().st_ino == written and (saved["state"], saved["owner"]) == ("queued", os.getpid())
    manager.pause([job])
    assert told.is_set() and manager.wait([job], timeout=10)
    assert json.loads(state.read_text())["state"] == "paused" and state.stat().st_ino != written


def test_series_job_round_trips_through_json() -> None:
    job = SeriesJob(id="abc", node="n", method="wado-rs", study_uid="1", series_uid="1.1",
                    instances=[Expected("1", "1.1", "1.1.1", "cls")], sop_classes=("cls",), dest="/tmp/x",
                    description="MR 2: t1", state="incomplete", done=0, bytes=12, error="refused",
                    overrides=(("PatientName", "Doe^Jane"),))
    again = SeriesJob.from_json(json.loads(json.dumps(job.to_json())))
    assert again.to_json() == job.to_json() and again.status().text == "incomplete: 1 missing"
    unlisted = SeriesJob(id="def", node="n", method="wado-rs", study_uid="1", series_uid="1.2", instances=[],
                         state="paused", listed=False)
    again = SeriesJob.from_json(json.loads(json.dumps(unlisted.to_json())))
    assert not again.listed and again.status().text == "paused: not listed yet"


@pytest.mark.integration
def test_a_retry_uses_the_node_as_saved_now(study: Any) -> None:
    """A network error leaves the jobs incomplete; fixing the saved node and retrying finishes them."""
    import peers

    from dicomnb.core.errors import ConnectionFailed

    peer, uid, files = study
    name = saved_node(peer)
    dicomnb.add_node(name, aet=peer.aet, host="127.0.0.1", port=peer.port,
                     wado_url=f"http://127.0.0.1:{peers.free_port()}/wado", replace=True)
    with pytest.raises(ConnectionFailed):
        dicomnb.retrieve(name, uid, method="wado-uri")
    assert sorted(s.text for s in dicomnb.downloads()) == ["incomplete: 9 missing"] * 3
    saved_node(peer)  # the right WADO-URI address again
    retried = dicomnb.downloads.retry_missing()
    assert len(retried) == 3 and dicomnb.downloads.wait(retried, timeout=60)
    assert [s.state for s in dicomnb.downloads()] == ["complete"] * 3
    assert all(sop in dicomnb.catalog for sop in files)


@pytest.mark.integration
def test_a_pause_from_elsewhere_is_not_a_failure(study: Any) -> None:
    peer, uid, files = study
    dicomnb.downloads.series_parallel = 1
    try:
        result = dicomnb.retrieve(saved_node(peer), uid, method="wado-uri",
                                  progress=lambda done, total: done == 4 and dicomnb.downloads.pause())
    finally:
        dicomnb.downloads.series_parallel = 3
    assert result.cancelled and result.missing and 4 <= result.retrieved < 27
    # paused, not failed; the series under way may have ended before the pause reached it
    states = [s.state for s in dicomnb.downloads()]
    assert "paused" in states and set(states) <= {"paused", "complete"}
    dicomnb.downloads.resume()
    assert dicomnb.downloads.wait(timeout=60)
    assert {s.state for s in dicomnb.downloads()} == {"complete"}


def paused_once_two_landed(node: str, study_uid: str, cancel: threading.Event) -> Any:
    """Retrieve with ``cancel`` set once two instances have landed (one instance at a time per series)."""
    dicomnb.downloads.instance_parallel = 1
    try:
        return dicomnb.retrieve(node, study_uid, cancel=cancel, progress=lambda done, total: done >= 2 and cancel.set())
    finally:
        dicomnb.downloads.instance_parallel = 4


@pytest.mark.integration
def test_a_pause_while_a_dicomweb_study_is_listed_stops_the_series_already_started(
        study: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """WADO-RS starts each series as soon as it is listed; a pause must not wait for the listing to end."""
    from dicomnb.sources import wado_rs

    peer, uid, files = study
    dicomnb.add_node("orthanc-web", dicomweb=peer.dicomweb_url, replace=True)
    cancel = threading.Event()
    list_study = wado_rs.list_study
    first: list[str] = []
    second = threading.Event()
    lock = threading.Lock()

    def slow_listing(node: Any, study_uid: str, series_uids: Any, each: Any, **options: Any) -> None:
        def each_slowly(series_uid: str, row: Any, rows: Any) -> None:
            with lock:
                starts = not first
                first.append(series_uid)
            if starts:  # the first series listed starts once the second's listing has arrived too
                second.wait(10)
            else:       # the second is handed over only a second after the pause
                second.set()
                cancel.wait(10)
                time.sleep(1)
            each(series_uid, row, rows)

        list_study(node, study_uid, series_uids, each_slowly, **options)

    monkeypatch.setattr(wado_rs, "list_study", slow_listing)
    monkeypatch.setattr(wado_rs, "LIST_PARALLEL", 2)  # two series at once, the third after them
    result = paused_once_two_landed("orthanc-web", uid, cancel)
    assert result.cancelled and len(result.jobs) == 3
    states = {s.series_uid: s for s in dicomnb.downloads()}
    # the started series stopped within the second the second series' handing over still took (a
    # listing that has arrived is handed over whole); the others wait, paused: that one, and one
    # never listed, which lists itself when resumed
    assert 2 <= states[first[0]].done < 9 and {s.state for s in states.values()} == {"paused"}
    assert sorted(s.text for s in states.values() if s.series_uid != first[0]) == ["paused: 0/9",
                                                                                  "paused: not listed yet"]
    dicomnb.downloads.resume()
    assert dicomnb.downloads.wait(timeout=60)
    assert {s.state for s in dicomnb.downloads()} == {"complete"}
    assert all(sop in dicomnb.catalog for sop in files)


@pytest.mark.integration
def test_a_pause_leaves_the_listings_under_way_to_their_jobs(study: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A series whose listing (QIDO-RS) is still out at the pause: the retrieve returns without
    waiting for it, and its job, resumed, takes the rows that listing brings instead of asking again."""
    from dicomnb.sources.dicomweb import StudyListing

    peer, uid, files = study
    dicomnb.add_node("orthanc-web", dicomweb=peer.dicomweb_url, replace=True)
    cancel = threading.Event()
    instances = StudyListing.instances
    asked: list[str] = []
    ended: list[str] = []
    lock = threading.Lock()

    def slow_after_the_first(self: Any, series_uid: str) -> Any:
        with lock:
            asked.append(series_uid)
            first = len(asked) == 1
        if not first:  # Orthanc answering slowly: still out when the pause comes, and for 2 s after
            cancel.wait(30)
            time.sleep(2)
        rows = instances(self, series_uid)
        ended.append(series_uid)
        return rows

    monkeypatch.setattr(StudyListing, "instances", slow_after_the_first)
    result = paused_once_two_landed("orthanc-web", uid, cancel)
    assert result.cancelled and len(asked) == 3 and ended == asked[:1]  # returned before the two ended
    assert sorted(result.unlisted) == sorted(asked[1:]) and not result.complete
    assert "2 series not listed yet: dicomnb.downloads.resume() lists and fetches them" in result.message
    states = {s.series_uid: s for s in dicomnb.downloads()}
    assert len(states) == 3 and {s.state for s in states.values()} == {"paused"}
    assert sorted(s.text for s in states.values() if s.series_uid != asked[0]) == ["paused: not listed yet"] * 2
    dicomnb.downloads.resume()
    assert dicomnb.downloads.wait(timeout=60)
    assert {s.state for s in dicomnb.downloads()} == {"complete"} and all(sop in dicomnb.catalog for sop in files)
    assert sorted(asked) == sorted(set(asked)) and len(ended) == 3  # each series listed once


@pytest.mark.integration
def test_a_pause_while_a_retrieve_starts_its_jobs_holds_the_later_ones(study: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A pause from elsewhere (the panel's Pause all) between two of a retrieve's job starts keeps the
    jobs started after it paused too: none of them runs to completion behind the user's back."""
    peer, uid, files = study
    start = dicomnb.downloads.start
    started: list[str] = []

    def start_then_pause(jobs: Any, batch: Any = None) -> Any:
        queued = start(jobs, batch)
        started.extend(job.id for job in queued)
        if len(started) == 1:
            dicomnb.downloads.pause()  # lands after the first series started, before the others
        return queued

    monkeypatch.setattr(dicomnb.downloads, "start", start_then_pause)
    result = dicomnb.retrieve(saved_node(peer), uid, method="c-get")
    assert result.cancelled and len(result.jobs) == 3 and len(started) == 1
    assert {s.state for s in dicomnb.downloads()} == {"paused"}
    monkeypatch.setattr(dicomnb.downloads, "start", start)
    resumed = dicomnb.downloads.resume()
    assert len(resumed) == 3 and dicomnb.downloads.wait(resumed, timeout=60)
    assert {s.state for s in dicomnb.downloads()} == {"complete"}
    assert all(sop in dicomnb.catalog for sop in files)
