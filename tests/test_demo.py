"""The embedded demo archive: pynetdicom's qrscp in a child process, loaded with pydicom's samples.

Each test starts its own archive (about a second) in its own configuration and cache folders,
and checks at the end that the process is gone.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from conftest import require_module
from netcommon import collect_garbage  # noqa: F401 - autouse fixture

import dicomnb
import dicomnb.demo
from dicomnb.core.errors import DependencyMissing
from dicomnb.core.nodes import CallingNode, NodeStore
from dicomnb.demo import DemoArchive, DemoFailed

ROOT = Path(__file__).parents[1]


# --- helpers -------------------------------------------------------------------------------------

def gone(pid: int) -> bool:
    """True when process ``pid`` has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        return not _exists(pid)
    return "\nState:\tZ" in status


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return gone(pid)


def kill_if_alive(pid: int) -> None:
    """Last resort for a test that failed half-way: never leave a process behind."""
    if not gone(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_gone(pid, 5)


def samples() -> dict[str, dict[str, Path]]:
    """StudyInstanceUID → {SOPInstanceUID: file} of the files the demo loads."""
    studies: dict[str, dict[str, Path]] = collections.defaultdict(dict)
    for path in dicomnb.demo.sample_files():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        studies[str(ds.StudyInstanceUID)][str(ds.SOPInstanceUID)] = path
    return dict(studies)


def series_of(files: dict[str, Path]) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID) for p in files.values()}


def studies_in(folder: str) -> dict[str, dict[str, Path]]:
    """The studies (and their files) of one of pydicom's dicomdirtests folders, e.g. "98892001"."""
    return {study: files for study, files in samples().items()
            if all(folder in path.parts for path in files.values())}


def assert_same_files(result: dicomnb.RetrieveResult, files: dict[str, Path]) -> None:
    """The retrieve brought exactly the sample instances, each with the original data set."""
    assert not result.missing
    assert {r.SOPInstanceUID for r in result.instances} == set(files)
    for record in result.instances:
        ours = pydicom.dcmread(record.path)
        original = pydicom.dcmread(files[record.SOPInstanceUID])
        assert ours.SOPInstanceUID == original.SOPInstanceUID
        assert ours.PixelData == original.PixelData
        assert dicomnb.catalog.get(record.SOPInstanceUID) == record


def require_archive_modules() -> None:
    require_module("pynetdicom")
    require_module("sqlalchemy")


@pytest.fixture
def archive() -> Iterator[DemoArchive]:
    """The demo archive with pydicom's samples; stopped (and checked gone) at the end."""
    require_archive_modules()
    started = dicomnb.demo.start()
    try:
        yield started
    finally:
        dicomnb.demo.stop()
        assert wait_gone(started.pid, 15), f"the demo archive (pid {started.pid}) is still running"


# --- the module itself ---------------------------------------------------------------------------

def test_module_is_callable_and_exported() -> None:
    assert "demo" in dicomnb.__all__
    assert dicomnb.demo is sys.modules["dicomnb.demo"]
    assert callable(dicomnb.demo)
    assert dicomnb.demo.running() is None


def test_python_m_demo_help_runs_without_warning() -> None:
    result = subprocess.run([sys.executable, "-m", "dicomnb.demo", "--help"], capture_output=True,
                            text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "--port" in result.stdout and "--serve" not in result.stdout
    assert result.stderr == ""  # no "found in sys.modules" RuntimeWarning from runpy


def test_missing_sqlalchemy_names_the_extra() -> None:
    code = textwrap.dedent("""
        import sys
        sys.modules["sqlalchemy"] = None  # as if it were not installed
        import dicomnb
        from dicomnb.core.errors import DependencyMissing
        try:
            dicomnb.demo()
        except DependencyMissing as exc:
            print(exc)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "sqlalchemy" in result.stdout and "pip install 'dicomnb[network]'" in result.stdout
    assert issubclass(DependencyMissing, ImportError)


# --- the archive ---------------------------------------------------------------------------------

@pytest.mark.integration
def test_start_saves_the_node_and_loads_every_sample(archive: DemoArchive) -> None:
    assert archive.skipped == {}
    assert archive.instances == len(dicomnb.demo.sample_files())
    assert archive.node.name == "demo" and archive.node.aet == "DEMO"
    assert archive.node.host == "127.0.0.1" and archive.node.port == archive.port
    assert dicomnb.nodes() == [archive.node]
    assert dicomnb.echo("demo") < 5
    assert archive.folder.is_dir() and (archive.folder / "qrscp.ini").is_file()
    assert str(archive.port) in repr(archive) and "running" in repr(archive)
    assert f"127.0.0.1:{archive.port}" in archive._repr_html_()


@pytest.mark.integration
def test_query_studies_series_and_images(archive: DemoArchive) -> None:
    expected = samples()
    studies = dicomnb.query("demo")
    uids = [row["StudyInstanceUID"] for row in studies.rows]
    assert sorted(uids) == sorted(expected)  # each study once, though qrscp matches instances
    names = {str(row["PatientName"]) for row in studies.rows}
    assert {"Doe^Peter", "Люкceмбypг", "김희중"} <= names  # sent in UTF-8, not as "?"
    assert "PatientName" in studies.frame.columns and len(studies.frame) == len(expected)

    ((study, files),) = studies_in("98892001").items()  # Doe^Peter's CT: two series
    series = dicomnb.query("demo", level="series", study_uid=study)
    assert {row["SeriesInstanceUID"] for row in series.rows} == series_of(files)
    assert len(series.rows) == 2 and {row["Modality"] for row in series.rows} == {"CT"}

    images = dicomnb.query("demo", level="image", study_uid=study)
    assert sorted(row["SOPInstanceUID"] for row in images.rows) == sorted(files)

    peter = dicomnb.query("demo", patient_name="Doe^Pet*")
    assert len(peter.rows) == 4 and {str(r["PatientName"]) for r in peter.rows} == {"Doe^Peter"}


@pytest.mark.integration
def test_retrieve_a_study_with_c_get(archive: DemoArchive) -> None:
    study, files = max(studies_in("98892003").items(), key=lambda item: len(item[1]))  # Doe^Peter's MRA
    result = dicomnb.retrieve("demo", study, method="c-get")
    assert_same_files(result, files)
    assert len(files) == 11 and len(dicomnb.catalog.instances) == 11


@pytest.mark.integration
def test_retrieve_a_study_with_c_move_to_the_saved_calling_node(archive: DemoArchive) -> None:
    import peers

    # The archive knew the calling node saved when it started; saving another one and calling
    # start() again tells it the new C-MOVE destination (a free port here).
    NodeStore.load().set_calling(CallingNode(port=peers.free_port()))
    assert dicomnb.demo.start() is archive
    ((study, files),) = studies_in("98892001").items()
    result = dicomnb.retrieve("demo", study, method="c-move")
    assert_same_files(result, files)
    assert len({r.SeriesInstanceUID for r in result.instances}) == 2


@pytest.mark.integration
def test_a_second_start_returns_the_running_archive(archive: DemoArchive, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert dicomnb.demo() is archive
    assert dicomnb.demo.running() is archive
    # Another configuration folder (as each test has): the node is saved there too.
    monkeypatch.setenv("DICOMNB_CONFIG_DIR", str(tmp_path / "other-config"))
    assert dicomnb.nodes() == []
    again = dicomnb.demo.start(port=0, load=False)
    assert again is archive and again.pid == archive.pid
    assert dicomnb.nodes() == [archive.node]


@pytest.mark.integration
def test_stop_leaves_no_process_no_folder_and_no_node() -> None:
    require_archive_modules()
    archive = dicomnb.demo.start(load=False)
    try:
        assert archive.instances == 0
        assert dicomnb.query("demo").rows == []
        folder, pid = archive.folder, archive.pid
        dicomnb.demo.stop()
        assert wait_gone(pid, 15)
        assert not folder.exists()
        assert dicomnb.nodes() == []
        assert dicomnb.demo.running() is None and not archive.alive
        assert "stopped" in repr(archive)
        dicomnb.demo.stop()  # again: nothing to do
        archive.stop()
    finally:
        kill_if_alive(archive.pid)


@pytest.mark.integration
def test_a_node_of_another_process_is_left_alone_on_stop() -> None:
    require_archive_modules()
    archive = dicomnb.demo.start(load=False)
    try:
        # Another kernel started its own demo since: its node is not ours to remove.
        dicomnb.add_node("demo", aet="DEMO", host="127.0.0.1", port=archive.port % 60000 + 1, replace=True)
        dicomnb.demo.stop()
        assert [n.name for n in dicomnb.nodes()] == ["demo"]
    finally:
        kill_if_alive(archive.pid)


@pytest.mark.integration
def test_a_port_taken_is_a_typed_error_with_the_archives_stderr(isolated_cache: Path) -> None:
    require_archive_modules()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with pytest.raises(DemoFailed, match="cannot listen") as caught:
            dicomnb.demo.start(port=busy.getsockname()[1], load=False)
    assert "cannot listen on 127.0.0.1" in caught.value.stderr
    assert isinstance(caught.value, dicomnb.errors.SourceError)
    assert dicomnb.demo.running() is None and dicomnb.nodes() == []
    assert list((isolated_cache / "demo").iterdir()) == []  # its folder was deleted


@pytest.mark.integration
def test_the_archive_dies_with_its_parent_even_by_sigkill(tmp_path: Path) -> None:
    require_archive_modules()
    code = textwrap.dedent("""
        import sys, time
        import dicomnb
        archive = dicomnb.demo(load=False)
        print(archive.pid, archive.folder, flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    child = None
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line, "the parent did not start the demo archive"
        pid_text, folder = line.split(maxsplit=1)
        child = int(pid_text)
        assert not gone(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        assert wait_gone(child, 15), "the demo archive outlived its parent"
        assert not Path(folder.strip()).exists()  # it deleted its folder on the way out
    finally:
        kill_if_alive(parent.pid)
        if parent.poll() is None:
            parent.kill()
        parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()
        if child is not None:
            kill_if_alive(child)


@pytest.mark.integration
@pytest.mark.parametrize("command", [["-m", "dicomnb", "demo"], ["-m", "dicomnb.demo"]],
                         ids=["dicomnb demo", "python -m dicomnb.demo"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_foreground_command_runs_until_a_signal(command: list[str], signum: int) -> None:
    require_archive_modules()
    process = subprocess.Popen([sys.executable, *command, "--empty"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    child = None
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "node 'demo' = DEMO@127.0.0.1:" not in line:
            process.kill()
            pytest.fail(f"the demo did not start: {line}{process.communicate(timeout=10)[1]}")
        child = int(line.split("(pid ")[1].split(")")[0])
        assert [n.name for n in dicomnb.nodes()] == ["demo"]  # saved where this test's config is
        assert dicomnb.echo("demo") < 5
        process.send_signal(signum)
        out, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        assert "demo archive stopped" in out
        assert wait_gone(child, 15)
        assert dicomnb.nodes() == []
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
        if child is not None:
            kill_if_alive(child)
