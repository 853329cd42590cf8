"""Real DICOM peers for the tests: Orthanc, dcmqrscp and pynetdicom's qrscp, plus a silent peer.

Each server is started once per test session on free loopback ports, with ``TCP_NODELAY=1``
in its environment (Debian's DCMTK keeps Nagle on otherwise and stalls every C-STORE
sub-operation by ~45 ms), a temporary storage folder, and a C-MOVE destination ``DICOMNB``
at 127.0.0.1 on a port picked here. It is loaded with pydicom's bundled files (:data:`DATASET`)
and stopped by PID at the end (SIGTERM, then SIGKILL after a bounded wait), children included.

The loaded files were chosen to load on all three servers: several patients, studies and
modalities (CT, MR, US, SEG, RTPLAN, RTDOSE, SR, ECG, OT, CR), the UTF-8 file of the
Lestrade^G study, and the charset files (Cyrillic ``chrRuss.dcm``, Korean ``chrKoreanMulti.dcm``,
French, German, Japanese, Chinese) so that non-ASCII matching can be tested. All are
uncompressed: dcmqrscp, as configured, accepts only uncompressed transfer syntaxes
(see :data:`NOT_LOADED`).

:class:`RestartableServer` is the Orthanc or dcmqrscp a test crashes (SIGKILL) and starts
again on the same ports and storage, with logs verbose enough to count what it sent.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import generate_uid

PYDICOM_DATA = Path(pydicom.__file__).parent / "data"

#: pydicom's files loaded into every server (folder, name): distinct SOP Instance UIDs only.
DATASET: tuple[tuple[str, str], ...] = (
    ("test_files", "CT_small.dcm"),            # CT, CompressedSamples^CT1, 2004-01-19
    ("test_files", "MR_small.dcm"),            # MR, CompressedSamples^MR1, 2004-08-26
    ("test_files", "examples_overlay.dcm"),    # MR, Sssssss^Jsssss, 2005-11-30
    ("test_files", "examples_palette.dcm"),    # US, OB^^^^, 2011-05-25
    ("test_files", "liver_1frame.dcm"),        # SEG, JANCT000, 2003-04-17
    ("test_files", "rtplan.dcm"),              # RTPLAN, Last^First^mid^pre, 2003-07-16
    ("test_files", "rtdose.dcm"),              # RTDOSE, Lastname^Firstname, 2003-08-05
    ("test_files", "test-SR.dcm"),             # SR, Test^S R
    ("test_files", "waveform_ecg.dcm"),        # ECG, Anonymous, 2013-01-25
    ("test_files", "SC_rgb_small_odd.dcm"),    # OT, Lestrade^G, 2017-01-01, ISO_IR 192
    ("charset_files", "chrRuss.dcm"),          # OT, Люкceмбypг, ISO_IR 144
    ("charset_files", "chrKoreanMulti.dcm"),   # CR, 김희중, ISO 2022 IR 149
    ("charset_files", "chrFren.dcm"),          # OT, Buc^Jérôme, ISO_IR 100
    ("charset_files", "chrGerm.dcm"),          # OT, Äneas^Rüdiger, ISO_IR 100
    ("charset_files", "chrJapMulti.dcm"),      # CR, やまだ^たろう, ISO 2022 IR 87
    ("charset_files", "chrX1.dcm"),            # OT, Wang^XiaoDong=王^小東, ISO_IR 192
)

#: Files left out, and why (what a server refused when they were tried).
NOT_LOADED: dict[str, str] = {
    "JPEG-lossy.dcm, JPEG2000.dcm, MR_small_RLE.dcm, MR_small_jpeg_ls_lossless.dcm, image_dfl.dcm":
        "dcmqrscp accepts no compressed (JPEG, JPEG 2000, JPEG-LS, RLE, deflate) presentation "
        "context unless started with one +x option per syntax; Orthanc and qrscp store them",
    "MR_small_*.dcm variants, JPEG2000.dcm": "same SOP Instance UID as MR_small.dcm / JPEG-lossy.dcm",
    "ExplVR_BigEnd.dcm": "stored by all three, left out: big endian is retired and adds nothing here",
}

MOVE_AET = "DICOMNB"
START_TIMEOUT = 30.0   # seconds allowed for a server to answer after start
STOP_TIMEOUT = 10.0    # seconds allowed after SIGTERM before SIGKILL
ORTHANC_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


@dataclass(frozen=True)
class Peer:
    """A running DICOM server started for the tests.

    Attributes
    ----------
    name : str
        ``"orthanc"``, ``"dcmqrscp"`` or ``"qrscp"``.
    aet, host, port
        Its called AE title and DICOM address (always 127.0.0.1).
    http_port : int or None
        Orthanc's HTTP port (REST, WADO-URI at ``/wado``, DICOMweb at ``/dicom-web``).
    move_aet, move_port
        The C-MOVE destination it knows (``DICOMNB`` at 127.0.0.1:move_port).
    instances : tuple of str
        SOP Instance UIDs loaded into it.
    files : tuple of str
        The file names loaded, in the order of :data:`DATASET`.
    pid : int
        The server's process id.
    """

    name: str
    aet: str
    host: str
    port: int
    http_port: int | None
    move_aet: str
    move_port: int
    instances: tuple[str, ...]
    files: tuple[str, ...]
    pid: int

    @property
    def wado_url(self) -> str | None:
        """Orthanc's WADO-URI base URL (None for the others)."""
        return f"http://{self.host}:{self.http_port}/wado" if self.http_port else None

    @property
    def dicomweb_url(self) -> str | None:
        """Orthanc's DICOMweb root (None for the others)."""
        return f"http://{self.host}:{self.http_port}/dicom-web" if self.http_port else None


class PeerError(RuntimeError):
    """A peer could not be started or loaded (the message includes the end of its log)."""



def system_tool(name: str) -> str | None:
    """The path of a system command (DCMTK's), never the same-named app a virtualenv's
    pynetdicom installs (``storescp``, ``getscu``... in the venv's ``bin``)."""
    venv_bin = os.path.join(sys.prefix, "bin")
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and os.path.realpath(p) != os.path.realpath(venv_bin))
    return shutil.which(name, path=path)

def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (bound to port 0, read back, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dataset_files() -> list[Path]:
    return [PYDICOM_DATA / folder / name for folder, name in DATASET]


def sop_instance_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)


def ct_copies(study: str, series: int, per_series: int) -> Iterator[pydicom.Dataset]:
    """Copies of CT_small.dcm with fresh UIDs in ``study``: ``series`` series of ``per_series``.

    Series after series, with SeriesNumber and InstanceNumber counted from 1. Without the
    file's trailing padding: Orthanc drops it from what it receives over DIMSE, and what
    comes back is then byte for byte what was sent.
    """
    source = pydicom.dcmread(PYDICOM_DATA / "test_files" / "CT_small.dcm")
    del source.DataSetTrailingPadding
    for number in range(series):
        series_uid = generate_uid()
        for index in range(per_series):
            ds = copy.deepcopy(source)
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series_uid, generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.SeriesNumber, ds.InstanceNumber = number + 1, index + 1
            yield ds


def write_ct_study(folder: Path, series: int = 2, per_series: int = 3) -> tuple[str, dict[str, Path]]:
    """One study of :func:`ct_copies` written to ``folder`` as ``{series}-{instance}.dcm`` (from 0).

    Returns the StudyInstanceUID and {SOPInstanceUID: file}, series after series.
    """
    study = generate_uid()
    files: dict[str, Path] = {}
    for ds in ct_copies(study, series, per_series):
        files[ds.SOPInstanceUID] = folder / f"{ds.SeriesNumber - 1}-{ds.InstanceNumber - 1}.dcm"
        ds.save_as(files[ds.SOPInstanceUID], enforce_file_format=True)
    return study, files


def peer_env() -> dict[str, str]:
    """The environment of every server and DCMTK tool: Nagle off."""
    return {**os.environ, "TCP_NODELAY": "1"}


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc), e.g. dcmqrscp's per-association forks."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class ServerProcess:
    """A server started in the background, logged to a file, stopped by PID."""

    def __init__(self, name: str, argv: list[str], log: Path, cwd: Path) -> None:
        self.name = name
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(argv, cwd=cwd, env=peer_env(), stdout=self._log_file,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_ready(self, ready: Callable[[], bool], timeout: float = START_TIMEOUT) -> float:
        """Poll ``ready`` until it is true (bounded); return the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise PeerError(f"{self.name} exited with status {self.process.returncode} during "
                                f"start-up:\n{self.tail()}")
            if ready():
                return time.monotonic() - started
            time.sleep(0.05)
        self.stop()
        raise PeerError(f"{self.name} did not answer within {timeout:g} s:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL; the same for children left behind."""
        children = _children(self.pid) if self.process.poll() is None else []
        for pid in [self.pid, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        for pid in children:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
        self._log_file.close()

    def kill(self) -> None:
        """SIGKILL it now, as a crash would, with its children; return once they are all gone.

        The server is stopped (SIGSTOP) while its children are listed, so that it forks no
        new one meanwhile; then each is killed by PID. A child counts as gone once it is a
        zombie (the init process reaps it, not us).
        """
        children: list[int] = []
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGSTOP)
            children = _children(self.pid)
            for pid in [*children, self.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(_running(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.01)
        self._log_file.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def dimse_echo_ok(aet: str, port: int) -> bool:
    """One C-ECHO with pynetdicom (readiness check; no dicomnb code involved)."""
    from pynetdicom import AE

    ae = AE(ae_title="READY")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = 2
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title=aet)
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return bool("Status" in status and status.Status == 0)


def c_store_files(aet: str, port: int, files: list[Path]) -> dict[str, str]:
    """C-STORE ``files`` on one association; return {file name: why refused} for failures."""
    from pynetdicom import AE

    ae = AE(ae_title="LOADER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    pairs: dict[tuple[str, str], None] = {}
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        pairs[(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))] = None
    for sop_class, syntax in pairs:
        ae.add_requested_context(sop_class, [syntax])
    refused: dict[str, str] = {}
    assoc = ae.associate("127.0.0.1", port, ae_title=aet)
    if not assoc.is_established:
        if assoc.is_rejected or not port_open(port):
            raise PeerError(f"cannot associate with {aet}@127.0.0.1:{port} to load it")
        # Accepted, then aborted: none of the proposed presentation contexts was accepted.
        return {path.name: "no presentation context accepted" for path in files}
    try:
        for path in files:
            try:
                status = assoc.send_c_store(path)
            except ValueError as exc:  # no accepted presentation context for it
                refused[path.name] = str(exc)
                continue
            code = int(status.Status) if "Status" in status else None
            if code not in (0x0000, 0xB000, 0xB007, 0xB006):
                refused[path.name] = "no answer" if code is None else f"status 0x{code:04X}"
    finally:
        if assoc.is_established:
            assoc.release()
    return refused


def _check_loaded(name: str, refused: dict[str, str]) -> None:
    if refused:
        details = "; ".join(f"{file}: {why}" for file, why in refused.items())
        raise PeerError(f"{name} refused some of the test files: {details}")


def _peer(name: str, aet: str, port: int, http_port: int | None, move_port: int, pid: int) -> Peer:
    files = dataset_files()
    return Peer(name=name, aet=aet, host="127.0.0.1", port=port, http_port=http_port,
                move_aet=MOVE_AET, move_port=move_port,
                instances=tuple(sop_instance_uid(path) for path in files),
                files=tuple(path.name for path in files), pid=pid)


# --- Orthanc -----------------------------------------------------------------------------------

def orthanc_config(root: Path, aet: str, port: int, http_port: int, move_port: int,
                   check_called_aet: bool = False, users: dict[str, str] | None = None) -> dict[str, object]:
    """Orthanc's configuration; with ``users`` (name → password), HTTP basic auth is required."""
    return {
        "Name": "DICOMNB-TEST",
        "StorageDirectory": str(root / "db"),
        "IndexDirectory": str(root / "db"),
        "Plugins": [str(ORTHANC_PLUGIN)] if ORTHANC_PLUGIN.exists() else [],
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": bool(users),
        "RegisteredUsers": dict(users or {}),
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "HttpCompressionEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": aet,
        "DicomPort": port,
        "DicomCheckCalledAet": check_called_aet,
        "DicomCheckModalityHost": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
        "UnknownSopClassAccepted": True,
        "DicomScuTimeout": 10,
        "SynchronousCMove": True,
        "DicomModalities": {"dicomnb": {"AET": MOVE_AET, "Host": "127.0.0.1", "Port": move_port}},
        "SaveJobs": False,
        "StableAge": 2,
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado",
                     "Host": f"127.0.0.1:{http_port}", "Ssl": False},
    }


def basic_auth(users: dict[str, str] | None) -> dict[str, str]:
    """The Authorization header of the first of ``users`` (none without users)."""
    if not users:
        return {}
    import base64

    user, password = next(iter(users.items()))
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _http_ok(url: str, headers: dict[str, str] | None = None) -> bool:
    request = urllib.request.Request(url, headers=headers or {})
    with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=1) as response:
        return bool(response.status == 200)
    return False


def orthanc_upload(http_port: int, files: list[Path], headers: dict[str, str] | None = None) -> dict[str, str]:
    """REST ``POST /instances`` of each file; return {file name: why refused}."""
    refused: dict[str, str] = {}
    for path in files:
        request = urllib.request.Request(f"http://127.0.0.1:{http_port}/instances",
                                         data=path.read_bytes(), method="POST",
                                         headers={"Content-Type": "application/dicom", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            refused[path.name] = f"HTTP {exc.code}: {exc.read()[:200]!r}"
            continue
        if answer.get("Status") not in {"Success", "AlreadyStored"}:
            refused[path.name] = str(answer)
    return refused


@contextlib.contextmanager
def run_orthanc(root: Path, aet: str = "ORTHANC", load: bool = True,
                check_called_aet: bool = False, users: dict[str, str] | None = None) -> Iterator[Peer]:
    """Start Orthanc (with the DICOMweb plugin when installed), load it, yield it, stop it.

    With ``users`` (name → password) its HTTP side (REST, DICOMweb) wants basic auth.
    """
    binary = shutil.which("Orthanc")
    if binary is None:
        raise PeerError("Orthanc is not installed")
    root.mkdir(parents=True, exist_ok=True)
    (root / "db").mkdir(exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    port, http_port, move_port = free_port(), free_port(), free_port()
    config = root / "orthanc.json"
    config.write_text(json.dumps(orthanc_config(root, aet, port, http_port, move_port,
                                                check_called_aet, users), indent=2))
    server = ServerProcess("Orthanc", [binary, f"--logdir={root / 'logs'}", str(config)],
                           root / "stdout.log", root)
    try:
        auth = basic_auth(users)
        server.wait_ready(lambda: _http_ok(f"http://127.0.0.1:{http_port}/system", auth) and port_open(port))
        if load:
            _check_loaded("Orthanc", orthanc_upload(http_port, dataset_files(), auth))
        yield _peer("orthanc", aet, port, http_port, move_port, server.pid)
    finally:
        server.stop()


# --- dcmqrscp (DCMTK) --------------------------------------------------------------------------

def dcmqrscp_config(root: Path, aet: str, port: int, move_port: int) -> str:
    # HostTable lists C-MOVE destinations. AETable: <AET> <storage> <RW> (<studies>, <bytes/study>)
    # <peers>. dcmqrscp rejects a called AE title missing from the AETable ("called AE title not
    # recognised"), which the tests use. No UserName/GroupName: as root it would switch users.
    return f"""NetworkTCPPort  = {port}
MaxPDUSize      = 16384
MaxAssociations = 16

HostTable BEGIN
dicomnb = ({MOVE_AET}, 127.0.0.1, {move_port})
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
{aet}  {root / 'db'}  RW  (500, 1024mb)  ANY
AETable END
"""


@contextlib.contextmanager
def run_dcmqrscp(root: Path, aet: str = "DCMQRSCP", load: bool = True) -> Iterator[Peer]:
    """Start dcmqrscp (default fork-per-association mode), load it over C-STORE, yield, stop."""
    binary = shutil.which("dcmqrscp")
    if binary is None:
        raise PeerError("dcmqrscp is not installed")
    (root / "db").mkdir(parents=True, exist_ok=True)
    port, move_port = free_port(), free_port()
    config = root / "dcmqrscp.cfg"
    config.write_text(dcmqrscp_config(root, aet, port, move_port))
    # Not -s (single process): Debian's 3.6.7 segfaults after the first association with it.
    with _dimse_server("dcmqrscp", [binary, "-c", str(config)], root, aet, port, move_port, load) as peer:
        yield peer


@contextlib.contextmanager
def _dimse_server(name: str, command: list[str], root: Path, aet: str, port: int, move_port: int,
                  load: bool) -> Iterator[Peer]:
    """Start a DIMSE archive (logging to ``root/<name>.log``), load it over C-STORE, yield it, stop it."""
    server = ServerProcess(name, command, root / f"{name}.log", root)
    try:
        server.wait_ready(lambda: port_open(port) and dimse_echo_ok(aet, port))
        if load:
            _check_loaded(name, c_store_files(aet, port, dataset_files()))
        yield _peer(name, aet, port, None, move_port, server.pid)
    finally:
        server.stop()


# --- pynetdicom's qrscp (the embedded demo archive) ----------------------------------------------

def qrscp_config(root: Path, aet: str, port: int, move_port: int) -> str:
    # qrscp joins relative locations to its own package folder: give absolute paths.
    return f"""[DEFAULT]
    ae_title: {aet}
    port: {port}
    max_pdu: 16382
    acse_timeout: 30
    dimse_timeout: 30
    network_timeout: 30
    bind_address: 127.0.0.1
    instance_location: {root / 'instances'}
    database_location: {root / 'instances.sqlite'}
    log_identifier: False

[{MOVE_AET}]
    address: 127.0.0.1
    port: {move_port}
"""


@contextlib.contextmanager
def run_qrscp(root: Path, aet: str = "QRSCP", load: bool = True) -> Iterator[Peer]:
    """Start ``python -m pynetdicom qrscp``, load it over C-STORE, yield it, stop it."""
    root.mkdir(parents=True, exist_ok=True)
    port, move_port = free_port(), free_port()
    config = root / "qrscp.ini"
    config.write_text(qrscp_config(root, aet, port, move_port))
    command = [sys.executable, "-m", "pynetdicom", "qrscp", "-c", str(config)]
    with _dimse_server("qrscp", command, root, aet, port, move_port, load) as peer:
        yield peer


# --- servers a test crashes and starts again ---------------------------------------------------

_OUTGOING = "OUTGOING DIMSE MESSAGE"
_END_MESSAGE = "END DIMSE MESSAGE"
_C_STORE_RQ = re.compile(r"Message Type\s*: C-STORE RQ\s*$")
_AFFECTED_SOP = re.compile(r"Affected SOP Instance UID\s*: ([0-9.]+)\s*$")
_FILE_SERVED = re.compile(r"Plugin making REST GET call on URI /instances/([0-9a-f-]+)/file ")
_STORE_SUB_OPERATION = re.compile(r"Store SCU RQ: MsgID ")


class RestartableServer:
    """Orthanc or dcmqrscp on ports and storage of its own, that a test can SIGKILL and start again.

    The ports are picked once, so a node saved for the server stays right across restarts,
    and so does what it holds (Orthanc's index and files, dcmqrscp's folder and its
    ``index.dat``). A port the killed server held may still be bound for a moment (its
    connections in TIME_WAIT): starting again retries, bounded, until a new process binds
    it and answers.

    Each run logs to its own file (``run-N.log``), verbosely enough to count what it sent
    (:meth:`instances_sent`, :meth:`count_sent`):

    - Orthanc (``--verbose --trace-dicom``) dumps each C-STORE-RQ it sends, for a C-GET or a
      C-MOVE, as an ``OUTGOING DIMSE MESSAGE`` block with its ``Affected SOP Instance UID``;
      each file its DICOMweb plugin serves (WADO-URI and WADO-RS alike) shows as the plugin's
      REST call ``GET /instances/{id}/file``, named by Orthanc's instance ID.
    - dcmqrscp (``-v``) logs one ``Store SCU RQ: MsgID n`` line per C-STORE sub-operation,
      C-GET or C-MOVE, without its UID (``-d`` adds none).

    Use it as a context manager: the process it runs is killed by PID on the way out,
    whatever happened (its storage is the test's to throw away).
    """

    def __init__(self, kind: str, root: Path, aet: str | None = None) -> None:
        if kind not in ("orthanc", "dcmqrscp"):
            raise PeerError(f"no restartable server of kind {kind!r}: orthanc or dcmqrscp")
        binary = shutil.which("Orthanc" if kind == "orthanc" else "dcmqrscp")
        if binary is None:
            raise PeerError(f"{kind} is not installed")
        self.kind, self.root, self.aet = kind, root, aet or kind.upper()
        self.port, self.move_port = free_port(), free_port()
        self.http_port = free_port() if kind == "orthanc" else None
        (root / "db").mkdir(parents=True, exist_ok=True)
        if self.http_port is not None:
            config = root / "orthanc.json"
            settings = orthanc_config(root, self.aet, self.port, self.http_port, self.move_port)
            config.write_text(json.dumps(settings, indent=2))
            # --verbose first: it resets the log options read before it
            self.argv = [binary, "--verbose", "--trace-dicom", str(config)]
        else:
            config = root / "dcmqrscp.cfg"
            config.write_text(dcmqrscp_config(root, self.aet, self.port, self.move_port))
            self.argv = [binary, "-v", "-c", str(config)]
        self.runs = 0
        self.server: ServerProcess | None = None
        self._sop_of_id: dict[str, str] = {}

    def __enter__(self) -> RestartableServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    @property
    def running(self) -> bool:
        return self.server is not None and self.server.process.poll() is None

    @property
    def peer(self) -> Peer:
        """The server as it runs now (its ``pid`` changes with each start)."""
        if self.server is None:
            raise PeerError(f"{self.kind} is not running")
        return Peer(name=self.kind, aet=self.aet, host="127.0.0.1", port=self.port, http_port=self.http_port,
                    move_aet=MOVE_AET, move_port=self.move_port, instances=(), files=(), pid=self.server.pid)

    def log(self, run: int) -> Path:
        """The log of the ``run``-th start (from 1)."""
        return self.root / f"run-{run}.log"

    def _ready(self) -> bool:
        if self.http_port is not None:
            return _http_ok(f"http://127.0.0.1:{self.http_port}/system") and port_open(self.port)
        return port_open(self.port) and dimse_echo_ok(self.aet, self.port)

    def start(self) -> Peer:
        """Start it, on its ports and storage, unless it runs; return it once it answers."""
        if self.running:
            return self.peer
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            self.runs += 1
            server = ServerProcess(self.kind, self.argv, self.log(self.runs), self.root)
            try:
                server.wait_ready(self._ready, max(1.0, deadline - time.monotonic()))
            except PeerError:
                exited = server.process.poll() is not None
                server.kill()  # closes its log; nothing to signal once it has exited
                if not exited or time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)  # most likely a port still held: try again
                continue
            self.server = server
            return self.peer

    def load(self, files: list[Path]) -> None:
        """Give it these Part 10 files, which it then holds byte for byte as they are.

        Orthanc over REST (``POST /instances`` keeps the file as sent); dcmqrscp by copying
        them into its storage folder and registering them with ``dcmqridx`` (C-STORE into
        dcmqrscp costs ~57 ms an instance here, and it would write its own file meta).
        """
        if self.http_port is not None:
            _check_loaded("Orthanc", orthanc_upload(self.http_port, files))
            return
        indexer = system_tool("dcmqridx")
        if indexer is None:
            raise PeerError("dcmqridx (DCMTK) is not installed")
        copies = []
        for number, path in enumerate(files):
            copies.append(self.root / "db" / f"loaded-{number}.dcm")
            shutil.copyfile(path, copies[-1])
        for start in range(0, len(copies), 500):  # within the limits of a command line
            done = subprocess.run([indexer, str(self.root / "db"), *map(str, copies[start:start + 500])],
                                  capture_output=True, text=True, check=False, env=peer_env())
            if done.returncode != 0:
                raise PeerError(f"dcmqridx failed ({done.returncode}):\n{done.stderr[-2000:]}")

    def kill(self) -> None:
        """SIGKILL it now (and dcmqrscp's per-association children), as a crash would."""
        if self.server is not None:
            self.server.kill()
            self.server = None

    def mark(self) -> tuple[int, int]:
        """Where its log stands now (run, offset): what :meth:`sent` counts from."""
        path = self.log(self.runs)
        return self.runs, (path.stat().st_size if path.exists() else 0)

    def sent(self, since: tuple[int, int]) -> SentLog:
        """What it has sent since the mark ``since``, as its logs say (:meth:`SentLog.update` reads on)."""
        return SentLog(self, since)

    def instances_sent(self, since: tuple[int, int]) -> collections.Counter[str]:
        """SOP Instance UID → how many times Orthanc sent it since the mark ``since``.

        C-STORE sub-operations (C-GET, C-MOVE) and files served by the DICOMweb plugin
        (WADO-URI, WADO-RS) alike. Orthanc must be running (its instance IDs are looked up).
        """
        if self.http_port is None:
            raise PeerError("dcmqrscp does not log the UIDs of what it sends: use count_sent")
        log = self.sent(since)
        log.update()
        return collections.Counter(self._sop_instance_uid(orthanc_id) if uid is None else uid
                                   for uid, orthanc_id in log.found)

    def count_sent(self, since: tuple[int, int]) -> int:
        """How many instances it sent since the mark ``since`` (C-STORE sub-operations, files served)."""
        return self.sent(since).update()

    def _sop_instance_uid(self, orthanc_id: str) -> str:
        if orthanc_id not in self._sop_of_id:
            url = f"http://127.0.0.1:{self.http_port}/instances/{orthanc_id}"
            with urllib.request.urlopen(url, timeout=10) as response:
                tags = json.loads(response.read())["MainDicomTags"]
            self._sop_of_id[orthanc_id] = str(tags["SOPInstanceUID"])
        return self._sop_of_id[orthanc_id]


class SentLog:
    """The instances a :class:`RestartableServer` sent from a mark on, read from its logs as they grow.

    :meth:`update` reads only what the logs gained since the last call (cheap enough to
    call every few milliseconds while a transfer runs). ``found`` holds, in order, a
    ``(SOP Instance UID, None)`` per C-STORE-RQ Orthanc sent, a ``(None, Orthanc instance
    ID)`` per file it served, and a ``(None, None)`` per dcmqrscp sub-operation.
    """

    def __init__(self, server: RestartableServer, since: tuple[int, int]) -> None:
        self.server = server
        self.run, self.offset = max(since[0], 1), since[1]
        self.found: list[tuple[str | None, str | None]] = []
        self._outgoing = self._store = False

    def update(self) -> int:
        """Read what the logs gained; return how many instances were sent since the mark."""
        while True:
            path = self.server.log(self.run)
            if path.exists():
                with open(path, "rb") as log:
                    log.seek(self.offset)
                    gained = log.read()
                complete = gained[:gained.rfind(b"\n") + 1]  # a line being written: next time
                self.offset += len(complete)
                for line in complete.decode(errors="replace").splitlines():
                    self._read(line)
            if self.run >= self.server.runs:
                return len(self.found)
            self.run, self.offset = self.run + 1, 0

    def _read(self, line: str) -> None:
        if self.server.http_port is None:
            # dcmqrscp's children log to the same file at once: two lines may end up as one
            self.found += [(None, None)] * len(_STORE_SUB_OPERATION.findall(line))
        elif _OUTGOING in line:
            self._outgoing = True
        elif _END_MESSAGE in line:
            self._outgoing = self._store = False
        elif self._outgoing and _C_STORE_RQ.search(line):
            self._store = True
        elif self._store and (sop := _AFFECTED_SOP.search(line)):
            self.found.append((sop.group(1), None))
            self._store = False
        elif served := _FILE_SERVED.search(line):
            self.found.append((None, served.group(1)))


# --- scripted peers on loopback: a listening socket that runs a script per connection -----------

class LoopbackPeer:
    """A listening socket on 127.0.0.1 whose thread hands each connection to :meth:`handle`.

    Connections are taken one at a time, in the listening thread, and kept until
    :meth:`close`, which stops the thread and closes them all. Subclasses set what
    :meth:`handle` needs before calling ``super().__init__()`` (the thread starts there).
    ``stopping`` is set when the peer is closing: a script waiting on it ends.
    """

    thread_name = "loopback-peer"

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._connections: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, name=self.thread_name, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._connections.append(connection)
            self.handle(connection)

    def handle(self, connection: socket.socket) -> None:
        """What the peer does with one connection (in the listening thread)."""
        raise NotImplementedError

    def close(self) -> None:
        self.stopping.set()
        self._thread.join(5)
        for connection in self._connections:
            connection.close()
        self._listener.close()
        assert not self._thread.is_alive(), f"{self.thread_name} did not stop"

    def __enter__(self) -> LoopbackPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SilentPeer(LoopbackPeer):
    """Accepts TCP connections and never answers: for timeouts. Stop it with :meth:`close`.

    With ``hang_up=True`` it closes each connection at once instead (a peer that drops us).
    """

    thread_name = "silent-peer"

    def __init__(self, hang_up: bool = False) -> None:
        self.hang_up = hang_up
        super().__init__()

    def handle(self, connection: socket.socket) -> None:
        if self.hang_up:
            connection.close()
        # otherwise kept open, never read nor written


def accept_every_context(request: Any, max_pdu: int) -> bytes:
    """An A-ASSOCIATE-AC PDU for ``request`` (an ``upperlayer.Association``) accepting every
    proposed presentation context with its first transfer syntax."""
    from dicomnb.sources import upperlayer as ul

    for context in request.contexts:
        context.result, context.transfer_syntax = 0, context.transfer_syntaxes[0]
    return ul.Association(called=request.called, calling=request.calling,
                          contexts=request.contexts).encode(ul.ASSOCIATE_AC, max_pdu)


# --- a test CA, and DCMTK's storescp over TLS ---------------------------------------------------

def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PeerError(f"openssl {' '.join(args[:2])} failed:\n{result.stderr[-2000:]}")


def make_test_ca(folder: Path) -> dict[str, Path]:
    """A test CA and certificates signed by it, plus an unrelated self-signed "rogue" CA.

    Returns the PEM files by name: ``ca``, ``ca_key``, ``server`` (for IP 127.0.0.1),
    ``server_key``, ``client``, ``client_key`` (signed by ``ca``), ``rogue``, ``rogue_key``.
    The keys are unencrypted RSA 2048 (the ciphersuites of DCMTK's default BCP 195 profile
    are RSA ones); the extensions are those a strict verifier wants (CA basic constraints
    and key usage, key identifiers, the server's IP in subjectAltName, extended key usage).
    """
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    for ca, name in (("ca", "dicomnb test CA"), ("rogue", "rogue CA")):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.pem", cwd=folder)
        made[ca], made[f"{ca}_key"] = folder / f"{ca}.pem", folder / f"{ca}.key"
    usages = {"server": "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
              "client": "extendedKeyUsage=clientAuth\n"}
    for serial, (who, usage) in enumerate(usages.items(), 2):
        _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=dicomnb test {who}",
                 "-keyout", f"{who}.key", "-out", f"{who}.csr", cwd=folder)
        (folder / f"{who}.ext").write_text(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n" + usage)
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-set_serial", str(serial), "-days", "2", "-extfile", f"{who}.ext", "-out", f"{who}.pem",
                 cwd=folder)
        made[who], made[f"{who}_key"] = folder / f"{who}.pem", folder / f"{who}.key"
    return made


def tls_handshake_ok(port: int, certificates: dict[str, Path]) -> bool:
    """One TLS handshake with the test CA and client certificate (readiness check)."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=certificates["ca"])
    context.load_cert_chain(certificates["client"], certificates["client_key"])
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock, \
            context.wrap_socket(sock, server_hostname="127.0.0.1"):
        return True
    return False


@contextlib.contextmanager
def run_storescp_tls(root: Path, certificates: dict[str, Path], aet: str = "TLSSCP") -> Iterator[Peer]:
    """Start DCMTK's storescp over TLS on a free loopback port; yield it; stop it.

    It requires a client certificate signed by ``certificates["ca"]`` (``+cf``, ``-rc``) and
    writes what it receives, byte for byte (``+B``), to ``root / "received"``. It runs as one process
    (``--single-process``, storescp's default, said explicitly: ``--fork`` would leave a
    child per association), so it serves one association at a time; its socket and ACSE
    timeouts are short so that a client that stalls it cannot hold up the next test long.
    Debian's dcmqrscp is built without TLS; storescp is the DCMTK server that has it.
    """
    binary = system_tool("storescp")
    if binary is None:
        raise PeerError("storescp is not installed")
    received = root / "received"
    received.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [binary, "--single-process", "-v", "-aet", aet, "-od", str(received), "+B", "-ts", "5", "-ta", "5",
            "+tls", str(certificates["server_key"]), str(certificates["server"]), "-pw",
            "+cf", str(certificates["ca"]), "--require-peer-cert", str(port)]
    server = ServerProcess("storescp", argv, root / "storescp.log", root)
    try:
        server.wait_ready(lambda: tls_handshake_ok(port, certificates))
        yield Peer(name="storescp-tls", aet=aet, host="127.0.0.1", port=port, http_port=None,
                   move_aet=MOVE_AET, move_port=0, instances=(), files=(), pid=server.pid)
    finally:
        server.stop()
