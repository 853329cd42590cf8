"""The embedded demo archive: pynetdicom's Q/R SCP, loaded with pydicom's sample files.

>>> import dicomnb
>>> archive = dicomnb.demo()                 # the same as dicomnb.demo.start()
>>> dicomnb.query("demo").frame              # the node "demo" is saved while it runs
>>> dicomnb.retrieve("demo", study_uid)      # C-GET; C-MOVE works too (to the calling node)
>>> dicomnb.demo.stop()                      # or let it stop with the kernel

The archive is ``python -m pynetdicom qrscp`` (it needs sqlalchemy: ``pip install
'dicomnb[network]'``): its AE set-up, handlers and SQLite database, run in a child process
(``python -m dicomnb.demo --serve FOLDER``) that listens on 127.0.0.1 only. Its folder, in
dicomnb's cache (``<cache>/demo/demo-*``), holds ``qrscp.ini`` (``python -m pynetdicom qrscp -c
<folder>/qrscp.ini`` serves the same data), the database and the instances; the child deletes it
when it stops. The samples are written straight into the database before the child listens
(no C-STORE round trip), so the archive answers within about a second.

The child stops with its parent, however the parent ends: :func:`stop` and ``atexit`` close
its standard input, and when the parent dies (even by SIGKILL) the operating system closes
it, the child reads end-of-file and shuts down. It also stops on SIGTERM or SIGINT, and when
it sees it has been re-parented. It runs in a session of its own, so interrupting a notebook
cell (or pressing Ctrl-C in the terminal of ``dicomnb demo``) does not reach it directly.

The node ``demo`` (AE title ``DEMO``) is saved with each start, replacing an older one of that
name (the port changes every time); :func:`stop` removes it again, so the saved nodes never
list an archive that is down. A kernel killed outright leaves it behind, pointing at a dead
port, until the next start replaces it. The C-MOVE destination is the saved calling node
(``DICOMNB`` at 127.0.0.1:11113 by default); calling :func:`start` again after changing it
tells the running archive.

``python -m dicomnb.demo`` and ``dicomnb demo`` run the archive in the foreground until
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import contextlib
import html
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from dicomnb.core.errors import DemoFailed
from dicomnb.core.nodes import CallingNode, DicomNode

__all__ = ["SAMPLE_FILES", "SAMPLE_FOLDERS", "DemoArchive", "DemoFailed", "running", "sample_files",
           "start", "stop"]

NODE_NAME = "demo"
AE_TITLE = "DEMO"
HOST = "127.0.0.1"
CONFIG_FILE = "qrscp.ini"
DATABASE_FILE = "instances.sqlite"
INSTANCES_FOLDER = "instances"
VERIFICATION = "1.2.840.10008.1.1"
START_TIMEOUT = 30.0  # seconds allowed for the child to load and listen
STOP_TIMEOUT = 10.0   # seconds allowed for the child to stop after its stdin closes

#: pydicom's bundled files loaded into the archive (relative to ``pydicom/data``): one file per
#: modality or kind, uncompressed but for one JPEG, plus names in several character sets.
SAMPLE_FILES: tuple[str, ...] = (
    "test_files/CT_small.dcm",            # CT, CompressedSamples^CT1, 128 x 128
    "test_files/MR_small.dcm",            # MR, CompressedSamples^MR1
    "test_files/JPEG-lossy.dcm",          # NM, JPEG baseline (needs pylibjpeg to display)
    "test_files/examples_palette.dcm",    # US, palette colour
    "test_files/liver_1frame.dcm",        # SEG
    "test_files/rtplan.dcm",              # RTPLAN
    "test_files/rtdose.dcm",              # RTDOSE
    "test_files/test-SR.dcm",             # SR
    "test_files/waveform_ecg.dcm",        # ECG
    "test_files/SC_rgb_small_odd.dcm",    # OT, RGB, UTF-8
    "charset_files/chrRuss.dcm",          # Cyrillic
    "charset_files/chrKoreanMulti.dcm",   # Korean
    "charset_files/chrJapMulti.dcm",      # Japanese
    "charset_files/chrX1.dcm",            # Chinese (UTF-8)
    "charset_files/chrGreek.dcm",         # Greek
    "charset_files/chrGerm.dcm",          # German
)

#: pydicom's folders of small multi-instance studies, loaded whole: Doe^Archibald (CR, CT) and
#: Doe^Peter (CT in two series, three MR studies), 31 instances.
SAMPLE_FOLDERS: tuple[str, ...] = (
    "test_files/dicomdirtests/77654033",
    "test_files/dicomdirtests/98892001",
    "test_files/dicomdirtests/98892003",
)


def sample_files() -> list[Path]:
    """The files :func:`start` loads: :data:`SAMPLE_FILES`, then :data:`SAMPLE_FOLDERS`' files."""
    import pydicom

    data = Path(pydicom.__file__).parent / "data"
    files = [data / name for name in SAMPLE_FILES]
    for folder in SAMPLE_FOLDERS:
        files += sorted(path for path in (data / folder).rglob("*") if path.is_file())
    return files


class _Child:
    """The archive's process, seen from the parent: its pipes, its answers, its last stderr lines."""

    def __init__(self, argv: list[str], folder: Path) -> None:
        self.folder = folder
        # stdin is the lifeline: the child stops when it closes. A session of its own keeps the
        # terminal's or the notebook's interrupt (SIGINT to the process group) away from it.
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            encoding="utf-8", errors="replace", bufsize=1, cwd=folder, env=_child_env(),
            start_new_session=True)
        self.answers: queue.Queue[str | None] = queue.Queue()
        self.errors: collections.deque[str] = collections.deque(maxlen=30)
        self._lock = threading.Lock()
        self._readers = [threading.Thread(target=self._read, args=(pipe, name), daemon=True,
                                          name=f"dicomnb-demo-{name}")
                         for pipe, name in ((self.process.stdout, "stdout"), (self.process.stderr, "stderr"))]
        for reader in self._readers:
            reader.start()

    def _read(self, pipe: IO[str] | None, name: str) -> None:
        """Copy the child's lines (answers from stdout, the rest from stderr) until the pipe closes."""
        with contextlib.suppress(OSError, ValueError):
            for line in pipe or ():
                if name == "stdout":
                    self.answers.put(line)
                else:
                    self.errors.append(line.rstrip("\n"))
        if name == "stdout":
            self.answers.put(None)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def answer(self, timeout: float) -> dict[str, Any] | None:
        """The child's next answer (a JSON object), None when it has exited; queue.Empty on timeout."""
        line = self.answers.get(timeout=timeout)
        return None if line is None else dict(json.loads(line))

    def tell(self, command: dict[str, Any], timeout: float = 10.0) -> None:
        """Send one command to the child and wait for its acknowledgement."""
        with self._lock:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write(json.dumps(command) + "\n")
                self.process.stdin.flush()
                answer = self.answer(timeout)
            except (OSError, AssertionError, ValueError, queue.Empty) as exc:
                raise DemoFailed("the demo archive does not answer any more: stop it and start it "
                                 "again (dicomnb.demo.stop(); dicomnb.demo())", stderr=self.tail()) from exc
            if answer is None:
                raise DemoFailed("the demo archive has stopped", stderr=self.tail())

    def tail(self) -> str:
        """The last lines the child wrote to its standard error (all of them once it has exited)."""
        if not self.alive:
            for reader in self._readers:
                reader.join(1.0)
        return "\n".join(self.errors)

    def end(self) -> None:
        """Close the lifeline and wait for the child (killing it after STOP_TIMEOUT); delete its folder."""
        with self._lock:
            process = self.process
            if process.stdin is not None and not process.stdin.closed:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
            for reader in self._readers:
                reader.join(1.0)
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
            shutil.rmtree(self.folder, ignore_errors=True)


class DemoArchive:
    """A running demo archive (read-only attributes; :meth:`stop` ends it).

    Attributes
    ----------
    node : DicomNode
        The saved node ``demo``: AE title ``DEMO`` on 127.0.0.1, :attr:`port`.
    pid : int
        The archive's process id.
    port : int
        Its DICOM port.
    folder : Path
        Its configuration, database and instances (deleted when it stops).
    instances : int
        The number of sample instances loaded.
    skipped : dict of str to str
        Sample files the database refused, and why.
    """

    def __init__(self, child: _Child, port: int, instances: int, skipped: dict[str, str],
                 move: CallingNode) -> None:
        self._child = child
        self._node = DicomNode(name=NODE_NAME, aet=AE_TITLE, host=HOST, port=port)
        self._instances = instances
        self._skipped = dict(skipped)
        self._move = move

    @property
    def node(self) -> DicomNode:
        """The node ``demo``."""
        return self._node

    @property
    def pid(self) -> int:
        """The archive's process id."""
        return self._child.process.pid

    @property
    def port(self) -> int:
        """Its DICOM port on 127.0.0.1."""
        return self._node.port

    @property
    def folder(self) -> Path:
        """Its configuration, database and instances (deleted when it stops)."""
        return self._child.folder

    @property
    def instances(self) -> int:
        """The number of sample instances loaded."""
        return self._instances

    @property
    def skipped(self) -> dict[str, str]:
        """Sample files the database refused, and why."""
        return dict(self._skipped)

    @property
    def alive(self) -> bool:
        """True while the archive's process runs."""
        return self._child.alive

    def stop(self) -> None:
        """Stop the archive (closing its standard input) and remove the saved node ``demo``.

        Waits up to 10 s for it to exit, then kills it. Calling it again does nothing more.
        """
        global _running
        with _lock:
            if _running is self:
                _running = None
        self._child.end()
        self._unregister()

    def _register(self) -> None:
        """Save the node ``demo`` and make the saved calling node its C-MOVE destination."""
        from dicomnb import network
        from dicomnb.core.nodes import NodeStore

        store = NodeStore.load()
        if NODE_NAME not in store or store.get(NODE_NAME) != self._node:
            node = self._node
            network.add_node(node.name, node.aet, node.host, node.port, replace=True)
        if store.calling != self._move:
            calling = store.calling
            self._child.tell({"move": [calling.aet, calling.host, calling.port]})
            self._move = calling

    def _unregister(self) -> None:
        """Remove the saved node ``demo`` if it is still ours (another process may have replaced it)."""
        from dicomnb.core.errors import ConfigError
        from dicomnb.core.nodes import NodeStore

        with contextlib.suppress(ConfigError):
            store = NodeStore.load()
            if NODE_NAME in store and store.get(NODE_NAME) == self._node:
                store.remove(NODE_NAME)

    def __repr__(self) -> str:
        state = "running" if self.alive else "stopped"
        node = self._node
        return (f"<DemoArchive {state}: node {node.name!r} = {node.aet}@{node.host}:{node.port}, "
                f"{self._instances} instances, pid {self.pid}>")

    def _repr_html_(self) -> str:
        node = self._node
        rows = [("node", f"{node.name}: {node.aet}@{node.host}:{node.port}"),
                ("state", f"{'running' if self.alive else 'stopped'} (pid {self.pid})"),
                ("instances", str(self._instances)), ("folder", str(self.folder))]
        if self._skipped:
            rows.append(("skipped", ", ".join(self._skipped)))
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                        f"<td style='text-align:left'>{html.escape(v)}</td></tr>" for k, v in rows)
        return (f"<div><b>dicomnb demo archive</b><table>{cells}</table><small>Query it with "
                f"<code>dicomnb.query(&quot;{NODE_NAME}&quot;)</code>; stop it with "
                "<code>dicomnb.demo.stop()</code>.</small></div>")


_lock = threading.RLock()
_running: DemoArchive | None = None
_atexit_registered = False


def running() -> DemoArchive | None:
    """The demo archive this process started, if it is still running."""
    with _lock:
        if _running is not None and not _running.alive:
            _running.stop()  # it died: delete its folder, remove its node
        return _running


def start(*, port: int = 0, load: bool = True, timeout: float = START_TIMEOUT) -> DemoArchive:
    """Start the demo archive, save it as node ``demo`` and return it.

    A second call returns the archive already running (its port and content unchanged:
    :func:`stop` it first to change them), after saving the node ``demo`` again if it is
    missing and telling the archive the calling node saved now (its C-MOVE destination).

    Parameters
    ----------
    port : int
        Its DICOM port on 127.0.0.1 (0: a free one).
    load : bool
        Load pydicom's sample files (:func:`sample_files`); False starts it empty.
    timeout : float
        Seconds allowed for it to load and listen.

    Returns
    -------
    DemoArchive
        ``.node``, ``.port``, ``.pid``, ``.instances``, ``.stop()``.

    Raises
    ------
    DependencyMissing
        pynetdicom or sqlalchemy is not installed (``pip install 'dicomnb[network]'``).
    DemoFailed
        The archive did not start (its port taken, a broken install...): the message ends with
        what it wrote to its standard error (also in ``.stderr``).
    ConfigError
        The port is not valid, or the saved configuration cannot be read.
    """
    global _running, _atexit_registered
    from dicomnb.core.deps import import_optional_dependency
    from dicomnb.core.nodes import NodeStore, check_port

    if port != 0:
        check_port(port)
    import_optional_dependency("pynetdicom", "network")
    import_optional_dependency("sqlalchemy", "network")
    with _lock:
        archive = running()
        if archive is not None:
            archive._register()
            return archive
        archive = _launch(port, load, NodeStore.load().calling, timeout)
        try:
            archive._register()
        except BaseException:
            archive.stop()
            raise
        _running = archive
        if not _atexit_registered:
            atexit.register(stop)
            _atexit_registered = True
        return archive


def stop() -> None:
    """Stop the demo archive this process started (if any) and remove the saved node ``demo``."""
    with _lock:
        archive = _running
    if archive is not None:
        archive.stop()


# --- the parent side: start the child, read its answers ----------------------------------------

def _config_text(folder: Path, port: int, move: CallingNode) -> str:
    # The format of pynetdicom's qrscp (apps/qrscp/default.ini); paths absolute, since qrscp
    # joins relative ones to its own package folder.
    return f"""# The dicomnb demo archive: python -m pynetdicom qrscp -c {folder / CONFIG_FILE} serves it too
[DEFAULT]
    ae_title: {AE_TITLE}
    port: {port}
    max_pdu: 16382
    acse_timeout: 30
    dimse_timeout: 30
    network_timeout: 30
    bind_address: {HOST}
    instance_location: {folder / INSTANCES_FOLDER}
    database_location: {folder / DATABASE_FILE}
    log_identifier: False

# The C-MOVE destination: dicomnb's calling node
[{move.aet}]
    address: {move.host}
    port: {move.port}
"""


def _child_env() -> dict[str, str]:
    # The child imports this very package, even when it is run from a source tree.
    package_root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}


def _launch(port: int, load: bool, move: CallingNode, timeout: float) -> DemoArchive:
    """Start the child and wait for it to say it listens (its port, what it loaded)."""
    from dicomnb.core.store import cache_folder

    root = cache_folder("demo")
    _sweep(root)
    folder = Path(tempfile.mkdtemp(prefix="demo-", dir=root))
    (folder / CONFIG_FILE).write_text(_config_text(folder, port, move), encoding="utf-8")
    argv = [sys.executable, "-m", "dicomnb.demo", "--serve", str(folder)] + ([] if load else ["--empty"])
    child = _Child(argv, folder)
    try:
        ready = child.answer(timeout)
    except queue.Empty:
        child.end()
        raise DemoFailed(f"the demo archive did not start within {timeout:g} s", stderr=child.tail()) from None
    except BaseException:
        child.end()
        raise
    if ready is None or "port" not in ready:
        child.end()
        raise DemoFailed(f"the demo archive exited with status {child.process.returncode} while starting",
                         stderr=child.tail())
    return DemoArchive(child, int(ready["port"]), int(ready["instances"]), dict(ready["skipped"]), move)


def _sweep(root: Path) -> None:
    """Delete demo folders left by archives that were killed outright (their pid is gone)."""
    for folder in root.glob("demo-*"):
        with contextlib.suppress(OSError, ValueError):
            if not _process_exists(int((folder / "pid").read_text())):
                shutil.rmtree(folder, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, and is someone else's
        return True
    return True


# --- the child side: load, serve, stop when the parent goes ------------------------------------

def _load(instances: Path, db_url: str, files: Iterable[Path]) -> tuple[int, dict[str, str]]:
    """Copy ``files`` into the ``instances`` folder and add them to qrscp's database directly.

    Returns the number loaded and, for each file refused, why (qrscp's database asserts
    lengths and the presence of the Patient ID and the UIDs).
    """
    import pydicom
    import sqlalchemy
    from pydicom.errors import InvalidDicomError
    from pynetdicom.apps.qrscp import db
    from sqlalchemy.orm import sessionmaker

    from dicomnb.core.store import key_for

    engine = sqlalchemy.create_engine(db_url)

    @sqlalchemy.event.listens_for(engine, "connect")
    def _fast(connection: Any, _record: Any) -> None:
        # A throw-away database: no need to wait for the disk on each of qrscp's commits.
        connection.execute("PRAGMA synchronous=OFF")

    loaded, skipped = 0, {}
    session = sessionmaker(bind=engine)()
    try:
        for path in files:
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                target = instances / f"{key_for(str(ds.SOPInstanceUID))}.dcm"
                shutil.copyfile(path, target)
                db.add_instance(ds, session, str(target))  # asserts lengths, commits
                loaded += 1
            except (AssertionError, AttributeError, KeyError, TypeError, ValueError, OSError,
                    InvalidDicomError, sqlalchemy.exc.SQLAlchemyError) as exc:
                session.rollback()
                skipped[path.name] = f"{type(exc).__name__}: {exc}"
    finally:
        session.close()
        engine.dispose()
    return loaded, skipped


def _serve(folder: Path, load: bool) -> int:
    """Run the archive described by ``folder/qrscp.ini`` until stdin closes or a signal comes."""
    import logging
    from configparser import ConfigParser

    # Imported for its module settings, so that the archive answers as `python -m pynetdicom
    # qrscp` does (empty text values as None, identifiers not logged).
    import pynetdicom.apps.qrscp.qrscp  # noqa: F401
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt, sop_class
    from pynetdicom.apps.qrscp import db
    from pynetdicom.apps.qrscp.handlers import handle_echo, handle_find, handle_get, handle_move, handle_store

    parent = os.getppid()
    (folder / "pid").write_text(str(os.getpid()))  # for _sweep, should we be killed outright
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    try:
        logging.basicConfig(level=logging.WARNING, format="%(levelname).1s %(name)s: %(message)s")
        logger = logging.getLogger("dicomnb.demo")
        config = ConfigParser()
        if not config.read(folder / CONFIG_FILE, encoding="utf-8"):
            print(f"dicomnb demo: no {CONFIG_FILE} in {folder}", file=sys.stderr)
            return 2
        app = config["DEFAULT"]
        destinations = {section.strip(): (config[section]["address"], int(config[section]["port"]))
                        for section in config.sections()}
        instances = Path(app["instance_location"])
        instances.mkdir(parents=True, exist_ok=True)
        db_url = f"sqlite:///{app['database_location']}"
        db.create(db_url).dispose()
        loaded, skipped = _load(instances, db_url, sample_files()) if load else (0, {})

        # The AE of qrscp.main(), Verification, Storage and Query/Retrieve only.
        ae = AE(app["ae_title"])
        ae.maximum_pdu_size = int(app["max_pdu"])
        ae.acse_timeout = float(app["acse_timeout"])
        ae.dimse_timeout = float(app["dimse_timeout"])
        ae.network_timeout = float(app["network_timeout"])
        ae.add_supported_context(VERIFICATION, ALL_TRANSFER_SYNTAXES)
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES, scp_role=True,
                                     scu_role=False)
        for model in ("PatientRoot", "StudyRoot"):
            for service in ("Find", "Move", "Get"):
                ae.add_supported_context(getattr(sop_class, f"{model}QueryRetrieveInformationModel{service}"))
        handlers: list[Any] = [
            (evt.EVT_C_ECHO, handle_echo, [None, logger]),
            (evt.EVT_C_FIND, _find_once, [handle_find, db_url, None, logger]),
            (evt.EVT_C_GET, handle_get, [db_url, None, logger]),
            (evt.EVT_C_MOVE, handle_move, [destinations, db_url, None, logger]),
            (evt.EVT_C_STORE, handle_store, [str(instances), db_url, None, logger]),
        ]
        try:
            server = ae.start_server((app["bind_address"], int(app["port"])), block=False,
                                     evt_handlers=handlers)
        except OSError as exc:
            print(f"dicomnb demo: cannot listen on {app['bind_address']}:{app['port']}: {exc}",
                  file=sys.stderr)
            return 3
        assert server is not None  # block=False returns it
        print(json.dumps({"port": server.server_address[1], "instances": loaded, "skipped": skipped}),
              flush=True)
        threading.Thread(target=_follow_parent, args=(destinations, done), name="lifeline",
                         daemon=True).start()
        # The stdin lifeline ends the wait. Watching for a new parent also covers a lifeline
        # kept open by someone else (a process forked from the parent that outlived it).
        while not done.wait(0.5):
            if os.getppid() != parent:
                break
        ae.shutdown()
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


#: The unique key of each C-FIND level.
_LEVEL_KEYS = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID"}


def _find_once(event: Any, handle_find: Any, *args: Any) -> Iterator[tuple[Any, Any]]:
    """qrscp's C-FIND, answering each patient, study or series once, in UTF-8.

    qrscp matches instances and answers one match per instance, at every level (a study of
    11 instances comes back 11 times), and sends names without a SpecificCharacterSet, so
    that pydicom writes anything beyond Latin-1 as ``?``.
    """
    key = _LEVEL_KEYS.get(str(getattr(event.identifier, "QueryRetrieveLevel", "")))
    seen: set[str] = set()
    for status, identifier in handle_find(event, *args):
        if identifier is not None:
            value = identifier.get(key) if key else None
            if value is not None:
                if str(value) in seen:
                    continue
                seen.add(str(value))
            identifier.SpecificCharacterSet = "ISO_IR 192"
        yield status, identifier


def _follow_parent(destinations: dict[str, tuple[str, int]], done: threading.Event) -> None:
    """Read the parent's commands from stdin; end-of-file (the parent is gone) stops the archive."""
    with contextlib.suppress(OSError, ValueError):
        for line in sys.stdin:
            command = json.loads(line)
            if "move" in command:
                aet, host, port = command["move"]
                destinations[str(aet).strip()] = (str(host), int(port))
            print(json.dumps({"ok": sorted(command)}), flush=True)
    done.set()


# --- the foreground: python -m dicomnb.demo, dicomnb demo --------------------------------------

@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt (main thread only), so that stop() runs on it too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(*, port: int = 0, load: bool = True) -> int:
    """Run the demo archive in the foreground until Ctrl-C or SIGTERM; return an exit status."""
    with _sigterm_as_interrupt():
        try:
            archive = start(port=port, load=load)
            node = archive.node
            print(f"demo archive running: node {node.name!r} = {node.aet}@{node.host}:{node.port}, "
                  f"{archive.instances} instances (pid {archive.pid}); "
                  f"try 'dicomnb query {node.name}'. Ctrl-C stops it.", flush=True)
            while archive.alive:
                time.sleep(0.2)
        except KeyboardInterrupt:
            stop()
            print("demo archive stopped", flush=True)
            return 0
    tail = archive._child.tail()
    archive.stop()
    print("dicomnb demo: the archive exited on its own" + (f":\n{tail}" if tail else ""), file=sys.stderr)
    return 4


def _setup_argparser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dicomnb.demo",
                                     description="Run the dicomnb demo archive until Ctrl-C.")
    parser.add_argument("--port", type=int, default=0, help="its DICOM port (default: a free one)")
    parser.add_argument("--empty", action="store_true", help="do not load pydicom's sample files")
    parser.add_argument("--serve", metavar="FOLDER", help=argparse.SUPPRESS)  # the child
    return parser


def main(args: list[str] | None = None) -> int:
    """``python -m dicomnb.demo [--port N] [--empty]``."""
    namespace = _setup_argparser().parse_args(args)
    if namespace.serve:
        return _serve(Path(namespace.serve), load=not namespace.empty)
    from dicomnb.core.errors import DicomnbError

    try:
        return run(port=namespace.port, load=not namespace.empty)
    except DicomnbError as exc:
        print(f"dicomnb demo: {exc}", file=sys.stderr)
        return 1


class _CallableModule(types.ModuleType):
    """This module, callable: ``dicomnb.demo()`` is ``dicomnb.demo.start()``."""

    def __call__(self, *, port: int = 0, load: bool = True, timeout: float = START_TIMEOUT) -> DemoArchive:
        return start(port=port, load=load, timeout=timeout)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    # Run the imported module, not this __main__ copy, so that its state is the one atexit sees.
    from dicomnb.demo import main as _main

    sys.exit(_main())
