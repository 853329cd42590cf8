"""Start Orthanc with its DICOMweb plugin on loopback, loaded with sample data, for the notebooks.

``binder/start`` runs it before JupyterLab starts; the test suite runs it on free ports
(``tests/test_binder.py``). It can be run by hand as well::

    python binder/start_orthanc.py start [--register]   # prints the shell lines to eval
    python binder/start_orthanc.py stop                 # by the PID it saved

``start`` writes Orthanc's configuration into its folder (``--root``, default
``$DICOMNB_ORTHANC_ROOT`` or ``<tmp>/dicomnb-orthanc``), starts ``Orthanc`` in a session of its
own (it outlives this script; its PID goes into ``orthanc.pid``), waits until it answers over
HTTP and DICOM, uploads the demo archive's sample files (``dicomnb.demo.sample_files()``:
pydicom's bundled files) through its REST API, and prints ``export`` lines for a shell::

    DICOMNB_ORTHANC_DIMSE="ORTHANC@127.0.0.1:4242"   # AET@host:port, for C-FIND, C-GET, C-MOVE
    DICOMNB_ORTHANC_HTTP="http://127.0.0.1:8042"     # REST; /wado (WADO-URI); /dicom-web (QIDO-RS, WADO-RS)
    DICOMNB_MOVE_PORT=11113                          # where Orthanc sends a C-MOVE: dicomnb's Storage SCP
    DICOMNB_ORTHANC_PID=1234

With ``--register`` it also saves the dicomnb nodes ``orthanc`` (DIMSE, with its WADO-URI
URL) and ``orthanc-web`` (DICOMweb), and makes ``DICOMNB`` on the move port the calling node.

Ports and names come from the options, else from the environment (``DICOMNB_ORTHANC_AET``,
``DICOMNB_ORTHANC_DICOM_PORT``, ``DICOMNB_ORTHANC_HTTP_PORT``, ``DICOMNB_MOVE_PORT``), else
Orthanc's defaults (4242, 8042) and dicomnb's (11113). Orthanc has no option to listen on one
address only: it refuses HTTP from other hosts (``RemoteAccessAllowed: false``) and everything
here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
MOVE_AET = "DICOMNB"
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
START_TIMEOUT = 30.0  # seconds allowed for Orthanc to answer after it starts
STOP_TIMEOUT = 15.0   # seconds allowed after SIGTERM (it takes 2 to 5 here) before SIGKILL
PID_FILE = "orthanc.pid"


def default_root() -> Path:
    return Path(os.environ.get("DICOMNB_ORTHANC_ROOT") or Path(tempfile.gettempdir()) / "dicomnb-orthanc")


def orthanc_binary() -> str:
    """Orthanc's executable (Debian and Ubuntu put it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise SystemExit("start_orthanc: Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)")
    return found


def dicomweb_plugin() -> Path:
    """The DICOMweb plugin: Debian and Ubuntu link it from Orthanc's plugin folder to a versioned file."""
    found = [PLUGIN] if PLUGIN.exists() else sorted(Path("/usr/lib/orthanc").glob("libOrthancDicomWeb.so*"))
    if not found:
        raise SystemExit(f"start_orthanc: the DICOMweb plugin {PLUGIN} is missing (apt-get install orthanc-dicomweb)")
    return found[0]


def config(root: Path, aet: str, dicom_port: int, http_port: int, move_port: int) -> dict[str, object]:
    """Orthanc's configuration: loopback only, no authentication, every DIMSE service allowed."""
    return {
        "Name": "dicomnb-binder",
        "StorageDirectory": str(root / "db"),
        "IndexDirectory": str(root / "db"),
        "Plugins": [str(dicomweb_plugin())],
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "OrthancExplorerEnabled": True,
        "DefaultEncoding": "Utf8",  # names in Cyrillic, Korean... come back whole over C-FIND
        "DicomAet": aet,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomCheckModalityHost": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
        "UnknownSopClassAccepted": True,
        "SynchronousCMove": True,
        "SaveJobs": False,
        # the C-MOVE destination: dicomnb's Storage SCP, which listens during a C-MOVE only
        "DicomModalities": {"dicomnb": {"AET": MOVE_AET, "Host": HOST, "Port": move_port}},
        # Host: dicomweb-client sends Host without its port, and Orthanc's RetrieveURL would lose it
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado",
                     "Host": f"{HOST}:{http_port}", "Ssl": False},
    }


def http_ok(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
        return bool(response.status == 200)
    return False


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
        return True
    return False


def is_orthanc(pid: int) -> bool:
    """True while ``pid`` is a running Orthanc (not a zombie, not a recycled PID)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return os.path.basename(command) == b"Orthanc" and state != "Z"


def saved_pid(root: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((root / PID_FILE).read_text().strip())
    return None


def upload(http_port: int, files: list[Path]) -> tuple[int, dict[str, str]]:
    """REST ``POST /instances`` of each file; return (instances stored, {file: why refused})."""
    stored, refused = 0, {}
    for path in files:
        request = urllib.request.Request(f"http://{HOST}:{http_port}/instances", data=path.read_bytes(),
                                         method="POST", headers={"Content-Type": "application/dicom"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status = json.loads(response.read()).get("Status")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            refused[path.name] = str(exc)
            continue
        if status in ("Success", "AlreadyStored"):
            stored += 1
        else:
            refused[path.name] = str(status)
    return stored, refused


def sample_files() -> list[Path]:
    """The demo archive's files (pydicom's bundled ones): both archives hold the same studies."""
    from dicomnb.demo import sample_files as demo_files

    return demo_files()


def register(aet: str, dicom_port: int, http_port: int, move_port: int) -> None:
    """Save the nodes ``orthanc`` and ``orthanc-web``, and the calling node Orthanc moves to."""
    import dicomnb
    from dicomnb.core.nodes import CallingNode, NodeStore

    http = f"http://{HOST}:{http_port}"
    dicomnb.add_node("orthanc", aet=aet, host=HOST, port=dicom_port, wado_url=f"{http}/wado", replace=True)
    dicomnb.add_node("orthanc-web", dicomweb=f"{http}/dicom-web", replace=True)
    store = NodeStore.load()
    if store.calling != CallingNode(aet=MOVE_AET, port=move_port):
        store.set_calling(CallingNode(aet=MOVE_AET, port=move_port))


def exports(aet: str, dicom_port: int, http_port: int, move_port: int, pid: int) -> str:
    values = {"DICOMNB_ORTHANC_DIMSE": f"{aet}@{HOST}:{dicom_port}",
              "DICOMNB_ORTHANC_HTTP": f"http://{HOST}:{http_port}",
              "DICOMNB_MOVE_PORT": str(move_port),
              "DICOMNB_ORTHANC_PID": str(pid)}
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())


def start(args: argparse.Namespace) -> int:
    root = Path(args.root).absolute()
    (root / "db").mkdir(parents=True, exist_ok=True)
    running = saved_pid(root)
    if running is not None and is_orthanc(running):
        raise SystemExit(f"start_orthanc: Orthanc already runs from {root} (pid {running}): stop it first")
    (root / "orthanc.json").write_text(json.dumps(
        config(root, args.aet, args.dicom_port, args.http_port, args.move_port), indent=2))
    with open(root / "orthanc.log", "wb") as log:
        process = subprocess.Popen([orthanc_binary(), str(root / "orthanc.json")], cwd=root, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "TCP_NODELAY": "1"})  # Nagle off: C-STORE stalls otherwise
    (root / PID_FILE).write_text(f"{process.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT
    while not (http_ok(f"http://{HOST}:{args.http_port}/system") and port_open(args.dicom_port)):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_pid(process.pid)
            tail = (root / "orthanc.log").read_text(errors="replace").splitlines()[-15:]
            raise SystemExit(f"start_orthanc: Orthanc did not start (see {root / 'orthanc.log'}):\n" + "\n".join(tail))
        time.sleep(0.05)
    stored = 0
    if not args.empty:
        stored, refused = upload(args.http_port, sample_files())
        for name, why in refused.items():
            print(f"start_orthanc: {name} not loaded: {why}", file=sys.stderr)
    if args.register:
        register(args.aet, args.dicom_port, args.http_port, args.move_port)
    print(f"start_orthanc: Orthanc {args.aet}@{HOST}:{args.dicom_port}, http://{HOST}:{args.http_port} "
          f"(pid {process.pid}), {stored} instances", file=sys.stderr)
    sys.stdout.write(exports(args.aet, args.dicom_port, args.http_port, args.move_port, process.pid))
    return 0


def stop_pid(pid: int) -> None:
    """SIGTERM, wait, then SIGKILL: Orthanc ``pid`` only (a PID that is no longer Orthanc is left alone)."""
    if not is_orthanc(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while is_orthanc(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our own child
        time.sleep(0.05)
    if is_orthanc(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def stop(args: argparse.Namespace) -> int:
    root = Path(args.root).absolute()
    pid = saved_pid(root)
    if pid is None:
        print(f"start_orthanc: no Orthanc started from {root}", file=sys.stderr)
        return 1
    stop_pid(pid)
    (root / PID_FILE).unlink(missing_ok=True)
    print(f"start_orthanc: Orthanc stopped (pid {pid})", file=sys.stderr)
    return 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _setup_argparser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    started = commands.add_parser("start", help="start Orthanc, load the sample data, print the exports")
    stopped = commands.add_parser("stop", help="stop the Orthanc started from --root")
    for command in (started, stopped):
        command.add_argument("--root", default=str(default_root()), help="its configuration, storage, log and PID")
    started.add_argument("--aet", default=os.environ.get("DICOMNB_ORTHANC_AET", "ORTHANC"))
    started.add_argument("--dicom-port", type=int, default=_env_int("DICOMNB_ORTHANC_DICOM_PORT", 4242))
    started.add_argument("--http-port", type=int, default=_env_int("DICOMNB_ORTHANC_HTTP_PORT", 8042))
    started.add_argument("--move-port", type=int, default=_env_int("DICOMNB_MOVE_PORT", 11113),
                         help="the port of dicomnb's Storage SCP, where Orthanc sends a C-MOVE")
    started.add_argument("--empty", action="store_true", help="load no sample data")
    started.add_argument("--register", action="store_true", help="save the dicomnb nodes orthanc and orthanc-web")
    return parser


def main(args: list[str] | None = None) -> int:
    parsed = _setup_argparser().parse_args(args)
    return start(parsed) if parsed.command == "start" else stop(parsed)


if __name__ == "__main__":
    sys.exit(main())
