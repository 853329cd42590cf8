"""The download panel's logic without a browser: real retrieves from Orthanc, buttons clicked in Python."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import require_module, require_tool
from netcommon import collect_garbage, node_of  # noqa: F401 - collect_garbage: autouse fixture

import dicomnb
from dicomnb.core.downloads import UPDATE_INTERVAL
from dicomnb.widgets.downloads import RETRY_LABEL, DownloadPanel, SeriesRow, shown

SMALL = (3, 4)   # series, instances per series
BIG = (3, 40)


def until(condition: Callable[[], object], timeout: float = 10, what: str = "") -> None:
    """Wait for ``condition()`` to hold (the panel is updated from the manager's thread)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what or condition}")
        time.sleep(0.02)


def first_time() -> Callable[[], bool]:
    """A test that holds the first time only, however many threads ask (progress comes from several)."""
    lock = threading.Lock()
    return lambda: lock.acquire(blocking=False)


def states(panel: DownloadPanel) -> list[str]:
    return [row.status.state for row in panel.rows.values() if row.status is not None]


def css(widget: Any) -> set[str]:
    return set(widget._dom_classes)


@dataclass(frozen=True)
class Archive:
    """An Orthanc of the module's own holding a small and a big study."""

    peer: Any
    small: str
    big: str
    big_series: tuple[str, ...]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    """Its own Orthanc: the session's has its studies counted by other tests."""
    require_tool("Orthanc")
    require_module("pynetdicom")
    import peers

    folder = tmp_path_factory.mktemp("panel-archive")
    (folder / "small").mkdir()
    (folder / "big").mkdir()
    small, small_files = peers.write_ct_study(folder / "small", *SMALL)
    big, big_files = peers.write_ct_study(folder / "big", *BIG)
    big_series = tuple(str(pydicom.dcmread(folder / "big" / f"{n}-0.dcm").SeriesInstanceUID) for n in range(BIG[0]))
    with peers.run_orthanc(folder / "server", load=False) as peer:
        assert peers.orthanc_upload(peer.http_port, [*small_files.values(), *big_files.values()]) == {}
        yield Archive(peer, small, big, big_series)


@pytest.fixture
def make_panel() -> Iterator[Callable[[], DownloadPanel]]:
    """Panels on ``dicomnb.downloads``, closed (and their jobs stopped) at the end of the test."""
    made: list[DownloadPanel] = []

    def make() -> DownloadPanel:
        made.append(DownloadPanel(dicomnb.downloads))
        return made[-1]

    yield make
    for panel in made:
        panel.wait_actions(10)
        panel.close()
    dicomnb.downloads.pause()
    assert dicomnb.downloads.wait(timeout=10)


# --- No server ---------------------------------------------------------------------------------------

def test_an_empty_panel(make_panel: Callable[[], DownloadPanel]) -> None:
    panel = make_panel()
    assert isinstance(dicomnb.downloads.panel(), DownloadPanel)
    assert panel.rows == {} and panel.body.children == ()
    assert panel.summary.value == "No downloads." and panel.refreshes == 1
    assert not shown(panel.retry_all) and not shown(panel.alert)
    assert panel.retry_all.description == RETRY_LABEL
    assert "dicomnb-downloads" in css(panel)
    for widget, name in [(panel.pause_all, "pause-all"), (panel.resume_all, "resume-all"),
                         (panel.retry_all, "retry-all"), (panel.clear_finished, "clear"), (panel.alert, "alert")]:
        assert f"dicomnb-downloads-{name}" in css(widget)
    row = SeriesRow("x")
    for widget, name in [(row, "row"), (row.bar, "bar"), (row.state, "state"), (row.toggle, "pause"),
                         (row.cancel, "cancel"), (row.retry, "retry")]:
        assert f"dicomnb-download-{name}" in css(widget)
    row.close()
    assert panel.pause_all.disabled and panel.resume_all.disabled and panel.clear_finished.disabled
    # nothing to act on is no error
    panel.pause_all.click()
    panel.resume_all.click()
    panel.clear_finished.click()
    assert panel.wait_actions(10) and not shown(panel.alert)
    # once closed, it neither follows the manager nor changes
    panel.close()
    count = panel.refreshes
    panel.refresh()
    assert panel.refreshes == count and panel.comm is None


# --- A real archive -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_one_row_per_series(archive: Archive, make_panel: Callable[[], DownloadPanel]) -> None:
    panel = make_panel()
    result = dicomnb.retrieve(node_of(archive.peer), archive.small, method="wado-uri")
    total = SMALL[0] * SMALL[1]
    assert result.retrieved == total
    until(lambda: states(panel) == ["complete"] * SMALL[0], what="three complete rows")
    assert len(panel.body.children) == SMALL[0]
    for row, status in zip(panel.body.children, dicomnb.downloads.status().jobs, strict=True):
        assert row is panel.rows[status.id] and row.status == status
        assert row.label.value == f"{status.description} — {archive.peer.name}"
        assert status.description.startswith("CT ")
        assert row.bar.value == row.bar.max == SMALL[1] and row.bar.bar_style == "success"
        assert row.state.value == status.text and row.state.value.startswith(f"complete: {SMALL[1]} instances, ")
        assert not shown(row.toggle) and not shown(row.retry) and not shown(row.error)
        assert row.cancel.description == "Remove"
    assert panel.overall.value == panel.overall.max == total and panel.overall.bar_style == "success"
    assert panel.summary.value.startswith(f"{total} of {total} instances, ") and panel.summary.value.endswith("kB")
    assert not shown(panel.retry_all) and not shown(panel.alert)
    assert panel.pause_all.disabled and panel.resume_all.disabled and not panel.clear_finished.disabled
    # an update sets values: the rows and their widgets stay
    rows, bars = list(panel.body.children), [row.bar for row in panel.rows.values()]
    panel.refresh()
    assert list(panel.body.children) == rows and [row.bar for row in panel.rows.values()] == bars
    # a panel made afterwards shows the same at once
    late = make_panel()
    assert [row.state.value for row in late.rows.values()] == [row.state.value for row in rows]
    # Clear finished forgets the jobs, not what they retrieved
    panel.clear_finished.click()
    assert panel.wait_actions(10)
    until(lambda: not panel.rows and not late.rows, what="no rows")
    assert panel.body.children == () and panel.summary.value == "No downloads." and not shown(panel.alert)
    assert len(dicomnb.catalog) == total and dicomnb.downloads.jobs() == []


@pytest.mark.integration
def test_updates_are_few_and_reuse_the_widgets(archive: Archive, make_panel: Callable[[], DownloadPanel]) -> None:
    panel = make_panel()
    row_sets: list[tuple[Any, ...]] = []
    panel.body.observe(lambda change: row_sets.append(change["new"]), "children")
    seen: list[str] = []
    total = BIG[0] * BIG[1]

    one_at_a_time = threading.Lock()

    def slow_consumer(done: int, total: int) -> None:
        # stretches the transfer over about a second, so that the panel is updated many times
        with one_at_a_time:
            time.sleep(0.008)
        if done % 10 == 0:
            seen.extend(row.state.value for row in list(panel.rows.values()))
            seen.append(panel.summary.value)

    before, started = panel.refreshes, time.monotonic()
    result = dicomnb.retrieve(node_of(archive.peer), archive.big, method="wado-uri", progress=slow_consumer)
    seconds, updates = time.monotonic() - started, panel.refreshes - before
    assert result.retrieved == total
    assert seconds > 0.5, seconds
    assert 3 <= updates <= seconds / UPDATE_INTERVAL + 2, (updates, seconds)
    assert updates / seconds <= 12
    assert any(text.startswith("running: ") for text in seen)
    assert any(f"of {total} instances" in text and "/s" in text for text in seen)
    until(lambda: states(panel) == ["complete"] * BIG[0], what="three complete rows")
    # the rows were made once each: later updates only set values
    assert 1 <= len(row_sets) <= BIG[0] and row_sets[-1] == panel.body.children
    made = {id(row) for rows in row_sets for row in rows}
    assert made == {id(row) for row in panel.rows.values()}


@pytest.mark.integration
def test_pause_and_resume_a_row(archive: Archive, make_panel: Callable[[], DownloadPanel]) -> None:
    panel = make_panel()
    clicked: list[str] = []
    first = first_time()

    def pause_at_a_third(done: int, total: int) -> None:
        if done >= total / 3 and first():
            panel.refresh()  # the row may be younger than the manager's last report
            (row,) = panel.rows.values()
            clicked.append(row.toggle.description)
            row.toggle.click()

    result = dicomnb.retrieve(node_of(archive.peer), archive.big, [archive.big_series[0]], method="wado-uri",
                              progress=pause_at_a_third, raise_incomplete=False)
    assert clicked == ["Pause"] and BIG[1] / 3 <= result.retrieved < BIG[1]
    until(lambda: states(panel) == ["paused"], what="a paused row")
    (row,) = panel.rows.values()
    assert row.toggle.description == "Resume" and shown(row.toggle) and not shown(row.retry)
    assert row.bar.bar_style == "warning" and row.bar.value == result.retrieved and row.bar.max == BIG[1]
    assert row.state.value == f"paused: {result.retrieved}/{BIG[1]}"
    assert panel.overall.bar_style == "warning" and not shown(panel.alert)
    row.toggle.click()
    assert dicomnb.downloads.wait(timeout=20)
    until(lambda: states(panel) == ["complete"], what="a complete row")
    assert row.bar.value == BIG[1] and row.bar.bar_style == "success" and len(dicomnb.catalog) == BIG[1]


@pytest.mark.integration
def test_pause_all_and_resume_all(archive: Archive, make_panel: Callable[[], DownloadPanel]) -> None:
    panel = make_panel()
    total = BIG[0] * BIG[1]
    clicked, first = threading.Event(), first_time()

    def pause_early(done: int, total: int) -> None:
        # early: no series may be complete yet (they run at once, about as fast as each other)
        if done >= total / 10 and first():
            clicked.set()
            panel.pause_all.click()

    result = dicomnb.retrieve(node_of(archive.peer), archive.big, method="wado-uri", progress=pause_early,
                              raise_incomplete=False)
    assert clicked.is_set() and result.retrieved < total
    until(lambda: states(panel) == ["paused"] * BIG[0], what="three paused rows")
    assert [row.toggle.description for row in panel.rows.values()] == ["Resume"] * BIG[0]
    assert panel.pause_all.disabled and not panel.resume_all.disabled and panel.overall.bar_style == "warning"
    assert panel.overall.value == result.retrieved and panel.overall.max == total
    assert panel.summary.value.startswith(f"{result.retrieved} of {total} instances, ")
    panel.resume_all.click()
    assert dicomnb.downloads.wait(timeout=20)
    until(lambda: states(panel) == ["complete"] * BIG[0], what="three complete rows")
    assert panel.overall.value == total and len(dicomnb.catalog) == total


@pytest.mark.integration
def test_cancel_removes_the_row_and_keeps_what_landed(archive: Archive,
                                                      make_panel: Callable[[], DownloadPanel]) -> None:
    panel = make_panel()
    clicked, first = threading.Event(), first_time()

    def cancel_at_a_third(done: int, total: int) -> None:
        if done >= total / 3 and first():
            clicked.set()
            panel.refresh()
            (row,) = panel.rows.values()
            row.cancel.click()  # it waits for the job to stop: in a thread of its own, not this one

    result = dicomnb.retrieve(node_of(archive.peer), archive.big, [archive.big_series[1]], method="wado-uri",
                              progress=cancel_at_a_third, raise_incomplete=False)
    assert panel.wait_actions(10)
    until(lambda: not panel.rows, what="no row")
    assert panel.body.children == () and not shown(panel.alert) and dicomnb.downloads.jobs() == []
    assert BIG[1] / 3 <= result.retrieved < BIG[1] and len(dicomnb.catalog) == result.retrieved
    assert all(Path(record.path).is_file() for record in dicomnb.catalog.records())


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``dicomnb ...`` in a process of its own (the same cache and configuration folders)."""
    return subprocess.run([sys.executable, "-m", "dicomnb", *args], capture_output=True, text=True, timeout=60,
                          env=os.environ.copy())


@pytest.mark.integration
def test_incomplete_then_download_the_missing_files_again(archive: Archive,
                                                          make_panel: Callable[[], DownloadPanel]) -> None:
    import peers

    peer = archive.peer
    # another process retrieves while the node's WADO-URI address is wrong: nothing listens there
    dicomnb.add_node("pacs", peer.aet, peer.host, peer.port, wado_url=f"http://127.0.0.1:{peers.free_port()}/wado")
    run = cli("retrieve", "pacs", "--study", archive.small, "--method", "wado-uri")
    assert run.returncode == 4, run.stderr
    panel = make_panel()
    assert states(panel) == ["incomplete"] * SMALL[0]
    for row in panel.rows.values():
        assert row.state.value == f"incomplete: {SMALL[1]} missing" and row.bar.bar_style == "danger"
        assert shown(row.retry) and row.retry.description == RETRY_LABEL and not shown(row.toggle)
        assert shown(row.error) and "connection refused" in row.error.value
    assert shown(panel.retry_all) and panel.retry_all.description == RETRY_LABEL
    assert panel.overall.bar_style == "danger"
    # the address fixed, one row's button fetches that series' missing files
    dicomnb.add_node("pacs", peer.aet, peer.host, peer.port, wado_url=peer.wado_url, replace=True)
    first, *others = panel.rows.values()
    first.retry.click()
    assert dicomnb.downloads.wait(timeout=20)
    until(lambda: states(panel) == ["complete"] + ["incomplete"] * len(others), what="one complete row")
    assert not shown(first.retry) and not shown(first.error) and first.bar.bar_style == "success"
    assert len(dicomnb.catalog) == SMALL[1] and shown(panel.retry_all)
    # and the overall button the others'
    panel.retry_all.click()
    assert dicomnb.downloads.wait(timeout=20)
    until(lambda: states(panel) == ["complete"] * SMALL[0], what="three complete rows")
    assert not shown(panel.retry_all) and not shown(panel.alert) and panel.overall.bar_style == "success"
    assert len(dicomnb.catalog) == SMALL[0] * SMALL[1]


@pytest.mark.integration
def test_the_managers_errors_show_in_the_alert(archive: Archive, make_panel: Callable[[], DownloadPanel]) -> None:
    dicomnb.retrieve(node_of(archive.peer), archive.small, method="wado-uri")
    panel = make_panel()
    first, second, third = panel.rows.values()
    # another process forgets two jobs while the panel still shows them
    run = cli("downloads", "cancel", first.job_id, second.job_id)
    assert run.returncode == 0, run.stderr
    second.retry.click()
    assert shown(panel.alert) and f"no download {second.job_id!r}" in panel.alert.value
    assert list(panel.rows) == [third.job_id]  # the panel looked again
    first.cancel.click()  # in a thread: its error too goes to the alert
    assert panel.wait_actions(10)
    assert shown(panel.alert) and f"no download {first.job_id!r}" in panel.alert.value
    # the next action that works takes the alert away
    panel.clear_finished.click()
    assert panel.wait_actions(10)
    until(lambda: not panel.rows, what="no rows")
    assert not shown(panel.alert) and panel.alert.value == ""
    assert len(dicomnb.catalog) == SMALL[0] * SMALL[1]
