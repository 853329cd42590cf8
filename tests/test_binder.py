"""The Binder set-up (binder/): what can be checked here of what repo2docker builds and runs.

- ``binder/start`` (repo2docker runs it before JupyterLab) is run for real, on free ports: it
  starts Orthanc with its DICOMweb plugin and the sample data, saves the dicomnb nodes, exports
  the variables the notebooks read, and hands over to its arguments (``exec "$@"``). The archive
  must then answer C-ECHO, C-FIND, C-MOVE and QIDO-RS, hold the sample data, and stop by PID.
- Every package ``apt.txt`` names must exist for apt here (Binder's image is Ubuntu, whose
  package names for Orthanc are Debian's), and be the packages the start script relies on.
- ``requirements.txt`` and postBuild's ``.[all]`` must be satisfied by this environment, checked
  by pip itself without an index (no network).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import missing_peer, require_module, require_tool

import dicomnb
from dicomnb.core.nodes import CallingNode, NodeStore

BINDER = Path(__file__).parents[1] / "binder"
PRINT_ENV = ("import json, os; "
             "print(json.dumps({k: v for k, v in os.environ.items() if k.startswith('DICOMNB_')}))")


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def stop_by_pid(pid: int) -> None:
    """SIGTERM, a bounded wait, then SIGKILL: the Orthanc a failed test left behind."""
    if not running(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if running(pid):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def binder_orthanc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """``binder/start`` run as repo2docker runs it, on free ports; yields the environment it gave
    its command. The Orthanc it started is stopped by PID at the end, whatever happened."""
    import peers

    require_tool("Orthanc")
    require_module("pynetdicom")
    if not peers.ORTHANC_PLUGIN.exists():
        missing_peer(f"the DICOMweb plugin {peers.ORTHANC_PLUGIN} is missing (apt-get install orthanc-dicomweb)")
    root = tmp_path / "orthanc"
    ports = {"DICOMNB_ORTHANC_DICOM_PORT": peers.free_port(), "DICOMNB_ORTHANC_HTTP_PORT": peers.free_port(),
             "DICOMNB_MOVE_PORT": peers.free_port()}
    for name, port in ports.items():
        monkeypatch.setenv(name, str(port))
    monkeypatch.setenv("DICOMNB_ORTHANC_ROOT", str(root))
    # On Binder the environment's python leads PATH, as this one does here.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["bash", str(BINDER / "start"), sys.executable, "-c", PRINT_ENV],
                          capture_output=True, text=True, timeout=120, check=False)
    pid_file = root / "orthanc.pid"
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    try:
        assert done.returncode == 0, done.stderr
        env = json.loads(done.stdout.strip().splitlines()[-1])
        assert env["DICOMNB_ORTHANC_PID"] == str(pid), done.stderr
        env.update({name: str(port) for name, port in ports.items()}, root=str(root))
        yield env
    finally:
        if pid is not None:
            stop_by_pid(pid)


@pytest.mark.integration
def test_start_runs_orthanc_with_the_sample_data_and_hands_over(binder_orthanc: dict[str, str]) -> None:
    env = binder_orthanc
    dicom_port, http_port = env["DICOMNB_ORTHANC_DICOM_PORT"], env["DICOMNB_ORTHANC_HTTP_PORT"]
    move_port = int(env["DICOMNB_MOVE_PORT"])
    # what the notebooks read
    assert env["DICOMNB_ORTHANC_DIMSE"] == f"ORTHANC@127.0.0.1:{dicom_port}"
    assert env["DICOMNB_ORTHANC_HTTP"] == f"http://127.0.0.1:{http_port}"
    pid = int(env["DICOMNB_ORTHANC_PID"])
    assert running(pid) and Path(f"/proc/{pid}/exe").resolve().name == "Orthanc"
    # the sample data: the demo archive's files, every one of them
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/statistics", timeout=10) as response:
        statistics = json.loads(response.read())
    samples = dicomnb.demo.sample_files()
    assert statistics["CountInstances"] == len(samples) == 47 and statistics["CountStudies"] == 22
    # the nodes it saved answer: C-ECHO, C-FIND (names whole: DefaultEncoding Utf8), QIDO-RS
    assert {node.name for node in dicomnb.nodes()} == {"orthanc", "orthanc-web"}
    assert dicomnb.echo("orthanc") > 0 and dicomnb.echo("orthanc-web") > 0
    assert [str(r["PatientName"]) for r in dicomnb.query("orthanc", patient_name="Люк*").rows] == ["Люкceмбypг"]
    assert len(dicomnb.query("orthanc-web").rows) == 22
    peter = dicomnb.query("orthanc-web", patient_name="Doe^Peter", modalities=("MR",))
    assert len(peter.rows) == 3
    # a C-MOVE reaches dicomnb's Storage SCP, the calling node it saved
    assert NodeStore.load().calling == CallingNode(aet="DICOMNB", port=move_port)
    mr = dicomnb.query("orthanc", patient_name="CompressedSamples^MR1").rows[0]
    assert dicomnb.retrieve("orthanc", mr["StudyInstanceUID"], method="c-move").retrieved == 1
    # stopped by the PID it saved
    stopped = subprocess.run([sys.executable, str(BINDER / "start_orthanc.py"), "stop", "--root", env["root"]],
                             capture_output=True, text=True, timeout=60, check=False)
    assert stopped.returncode == 0 and f"stopped (pid {pid})" in stopped.stderr
    assert not running(pid) and not (Path(env["root"]) / "orthanc.pid").exists()


@pytest.mark.integration
def test_start_hands_over_even_when_orthanc_cannot_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """JupyterLab must start on Binder whatever happens to Orthanc: the notebooks then say it is absent."""
    import peers

    require_tool("Orthanc")  # it starts, and fails on the port taken
    monkeypatch.setenv("DICOMNB_ORTHANC_ROOT", str(tmp_path / "orthanc"))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    with peers.SilentPeer() as taken:  # its HTTP port is already taken
        monkeypatch.setenv("DICOMNB_ORTHANC_HTTP_PORT", str(taken.port))
        monkeypatch.setenv("DICOMNB_ORTHANC_DICOM_PORT", str(peers.free_port()))
        done = subprocess.run(["bash", str(BINDER / "start"), sys.executable, "-c", PRINT_ENV],
                              capture_output=True, text=True, timeout=120, check=False)
    pid_file = tmp_path / "orthanc" / "orthanc.pid"
    if pid_file.exists():
        stop_by_pid(int(pid_file.read_text()))
    assert done.returncode == 0, done.stderr
    assert "start_orthanc: Orthanc did not start" in done.stderr and "already in use" in done.stderr
    assert "binder/start: Orthanc did not start; the notebooks use the embedded demo archive only" in done.stderr
    assert "DICOMNB_ORTHANC_HTTP" not in json.loads(done.stdout.strip().splitlines()[-1])


def test_start_is_executable_and_ends_by_handing_over() -> None:
    start = BINDER / "start"
    assert os.access(start, os.X_OK)
    assert start.read_text().splitlines()[0].startswith("#!")
    assert start.read_text().rstrip().splitlines()[-1] == 'exec "$@"'


def apt_packages() -> list[str]:
    lines = (BINDER / "apt.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


@pytest.mark.integration
def test_every_apt_package_exists_and_provides_what_start_runs() -> None:
    import peers

    assert apt_packages() == ["orthanc", "orthanc-dicomweb"]
    apt_cache = require_tool("apt-cache")
    for package in apt_packages():
        shown = subprocess.run([apt_cache, "show", package], capture_output=True, text=True, timeout=60, check=False)
        assert shown.returncode == 0 and f"Package: {package}" in shown.stdout, shown.stderr
    # the files the start script runs come from those packages
    dpkg = require_tool("dpkg")
    orthanc = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    for path, package in ((Path(orthanc).resolve(), "orthanc"), (peers.ORTHANC_PLUGIN, "orthanc-dicomweb")):
        owner = subprocess.run([dpkg, "-S", str(path)], capture_output=True, text=True, timeout=60, check=False)
        assert owner.returncode == 0 and owner.stdout.split(":")[0] == package, owner.stderr


def test_the_requirements_and_dicomnb_with_its_extras_are_satisfied_here() -> None:
    """What repo2docker installs (requirements.txt, then postBuild's ``pip install -e ".[all]"``)
    resolves in this environment: pip checks it against what is installed, without an index."""
    assert '-e ".[all]"' in (BINDER / "postBuild").read_text()
    assert 'all = ["dicomnb[notebook,network,codecs]"]' in (BINDER.parent / "pyproject.toml").read_text()
    for requirements in (["-r", str(BINDER / "requirements.txt")], ["dicomnb[all]"]):
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index",
                               "--disable-pip-version-check", *requirements],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        assert "Would install" not in done.stdout
