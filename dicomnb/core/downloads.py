"""The download manager: one job per series, run a few at a time, paused, resumed, retried.

A retrieve becomes one :class:`SeriesJob` per series (a study is its series' jobs). Each
job knows what its series holds (the listing, taken once), where it lands (the store, and
its ``dest`` folder), and how far it got. Jobs run :attr:`DownloadManager.series_parallel`
at a time; the method's own fetch (C-GET, C-MOVE, WADO-URI, WADO-RS) runs inside a job and
sees the job's pause as a cancel event: C-GET and C-MOVE send C-CANCEL, the HTTP methods stop
between two instances. Whatever arrived is in the store, complete, under its final name;
resuming (or retrying the missing) fetches only what is not.

State lives on disk beside the store (``<cache_dir>/downloads/<id>.json``, written
atomically), so the jobs outlive the process that ran them: a new kernel or a shell
(``dicomnb downloads``) lists them, and resuming finishes them into the same ``dest``. A
job whose process died while it ran shows as ``interrupted``. Two processes never run the
same series at once: a job holds a lock on its series (``flock``, released by the kernel if
the process dies) while it runs, and the temporary files a killed process left in the
series' folders are removed before it starts again.

The network lives elsewhere: the manager is given a ``fetch(job, landing, cancel)`` that
does the transfer (:mod:`dicomnb.network`), and reports progress to whoever subscribes
(:meth:`DownloadManager.subscribe`: the download panel, the command line's bar, a script) at
most :data:`UPDATE_INTERVAL` apart.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomnb.core.errors import DicomnbError, DownloadError
from dicomnb.core.model import Item
from dicomnb.core.overrides import Overrides, check_overrides
from dicomnb.core.retrieval import Expected, Landing, RetrieveResult
from dicomnb.core.settings import settings
from dicomnb.core.store import atomic_write, instance_path, key_for

try:  # POSIX: a lock the kernel drops when its process dies
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process at a time is the user's care
    fcntl = None  # type: ignore[assignment]

__all__ = ["JOB_STATES", "DownloadManager", "DownloadProgress", "JobStatus", "SeriesJob", "human_size", "preview_order"]

LOGGER = logging.getLogger(__name__)

QUEUED, RUNNING, PAUSED = "queued", "running", "paused"
INCOMPLETE, COMPLETE, INTERRUPTED = "incomplete", "complete", "interrupted"
#: The states a job can be in (``interrupted``: its process ended while it was queued or running).
JOB_STATES = (QUEUED, RUNNING, PAUSED, INCOMPLETE, COMPLETE, INTERRUPTED)
UNFINISHED = (QUEUED, RUNNING, PAUSED, INCOMPLETE, INTERRUPTED)

#: Seconds between two progress reports to the subscribers (at most ~10 a second).
UPDATE_INTERVAL = 0.1
#: Seconds between two looks at a cancel event (a pause waits for the next one).
CANCEL_POLL = 0.01
#: Seconds between two saves of a running job's counts (its state changes are saved at once).
SAVE_INTERVAL = 1.0
#: Seconds between two tries to take a series lock another job holds.
_LOCK_POLL = 0.05


class CancelEvent(threading.Event):
    """A job's pause: a :class:`threading.Event` that also tells its subscribers when it is set.

    What waits for either the pause or something else (the series of a C-GET or C-MOVE
    running on their associations) subscribes and is woken at once, rather than looking
    every :data:`CANCEL_POLL` s.
    """

    def __init__(self) -> None:
        super().__init__()
        self._subscribers: list[Callable[[], object]] = []
        self._subscribers_lock = threading.Lock()

    def set(self) -> None:
        super().set()
        with self._subscribers_lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber()

    def subscribe(self, subscriber: Callable[[], object]) -> Callable[[], None]:
        """Call ``subscriber()`` when it is set (at once if it is); return the unsubscribe."""
        with self._subscribers_lock:
            self._subscribers.append(subscriber)
        if self.is_set():
            subscriber()

        def unsubscribe() -> None:
            with self._subscribers_lock, contextlib.suppress(ValueError):
                self._subscribers.remove(subscriber)

        return unsubscribe


Fetch = Callable[["SeriesJob", Landing, threading.Event], bool]
#: ``list_series(job) -> (instances, instance numbers, SOP classes)``: what a series holds.
ListSeries = Callable[["SeriesJob"], "tuple[Sequence[Expected], dict[str, int], Sequence[str]]"]


def preview_order(count: int) -> list[int]:
    """Indices ``0..count-1`` in the order a series is fetched: first, last, middle, then by halving.

    >>> preview_order(9)
    [0, 8, 4, 2, 6, 1, 3, 5, 7]

    A useful preview (the ends and the middle of a stack) exists after three instances.
    """
    if count <= 0:
        return []
    order = [0] + ([count - 1] if count > 1 else [])
    intervals = collections.deque([(0, count - 1)])
    while intervals:
        low, high = intervals.popleft()
        if high - low < 2:
            continue
        middle = (low + high) // 2
        order.append(middle)
        intervals.extend(((low, middle), (middle, high)))
    return order


def _sorted_for_preview(instances: Sequence[Expected], numbers: dict[str, int]) -> list[Expected]:
    """The instances by InstanceNumber (listing order when not all have one), in preview order."""
    ordered = list(instances)
    if ordered and all(e.sop_instance_uid in numbers for e in ordered):
        ordered.sort(key=lambda e: numbers[e.sop_instance_uid])
    return [ordered[i] for i in preview_order(len(ordered))]


@dataclass(frozen=True)
class JobStatus:
    """Where one job stands (what a progress report and ``dicomnb downloads --json`` show).

    ``rate`` is bytes per second and ``eta`` seconds left, both over the job's current run
    (None when not running or not yet known); ``first_path`` is the first instance that
    landed, ready for a viewer before the rest of the series comes.
    """

    id: str
    state: str
    node: str
    method: str
    study_uid: str
    series_uid: str
    description: str
    done: int
    total: int
    bytes: int
    missing: int
    rate: float | None = None
    eta: float | None = None
    error: str = ""
    dest: str | None = None
    first_path: str | None = None
    listed: bool = True

    @property
    def text(self) -> str:
        """``"incomplete: 3 missing"``, ``"running: 40/120, 1.2 MB/s, 5 s left"``..."""
        if not self.listed:
            return f"{self.state}: not listed yet"
        if self.state == INCOMPLETE:
            return f"incomplete: {self.missing} missing"
        if self.state == RUNNING:
            text = f"running: {self.done}/{self.total}"
            if self.rate:
                text += f", {human_size(self.rate)}/s"
            if self.eta is not None:
                text += f", {self.eta:.0f} s left"
            return text
        if self.state == COMPLETE:
            return f"complete: {self.total} instance{'' if self.total == 1 else 's'}, {human_size(self.bytes)}"
        return f"{self.state}: {self.done}/{self.total}"

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class DownloadProgress:
    """A progress report: every job's status, and the totals over all of them."""

    jobs: tuple[JobStatus, ...]

    @property
    def done(self) -> int:
        return sum(j.done for j in self.jobs)

    @property
    def total(self) -> int:
        return sum(j.total for j in self.jobs)

    @property
    def bytes(self) -> int:
        return sum(j.bytes for j in self.jobs)

    @property
    def missing(self) -> int:
        return sum(j.missing for j in self.jobs)

    @property
    def rate(self) -> float:
        """Bytes per second over the running jobs."""
        return sum(j.rate or 0.0 for j in self.jobs if j.state == RUNNING)

    @property
    def eta(self) -> float | None:
        """Seconds left for the running and queued jobs, at the running ones' pace (None: unknown)."""
        running = [j for j in self.jobs if j.state == RUNNING and j.rate and j.done]
        if not running:
            return None
        per_instance = sum(j.bytes for j in running) / max(1, sum(j.done for j in running))
        left = sum(j.missing for j in self.jobs if j.state in (RUNNING, QUEUED))
        return left * per_instance / max(self.rate, 1e-9)


def human_size(count: float) -> str:
    """``"1.2 MB"``: a byte count as people read it (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"  # pragma: no cover


@dataclass(eq=False)
class SeriesJob:
    """The download of one series: what it holds, where it lands, how far it got.

    Its identity is the node, study, series and destination: retrieving the same series
    into the same place again is the same job.
    """

    id: str
    node: str
    method: str
    study_uid: str
    series_uid: str
    instances: list[Expected]                     # in the order they are fetched (preview first)
    sop_classes: tuple[str, ...] = ()             # the study's, for C-GET's presentation contexts
    dest: str | None = None
    description: str = ""
    state: str = QUEUED
    done: int = 0
    bytes: int = 0
    error: str = ""
    created: float = field(default_factory=time.time)
    owner: int = 0                                # the process running it (or queued in it)
    first_path: str | None = None
    #: False while its instances are not known: the listing of the study was paused or cut
    #: off before this series; the job lists the series itself when it runs.
    listed: bool = True
    #: Values its records show in place of the files' own (:mod:`dicomnb.core.overrides`).
    overrides: tuple[tuple[str, str], ...] = ()
    # -- this process only --
    #: What the process that started it knows and the disk does not: the node object, the
    #: calling node, the timeout (a resumed job finds the node and calling node as saved).
    runtime: dict[str, Any] = field(default_factory=dict, repr=False)
    result: RetrieveResult | None = field(default=None, repr=False)
    exception: BaseException | None = field(default=None, repr=False)
    _cancel: threading.Event = field(default_factory=CancelEvent, repr=False)
    _run_started: float = field(default=0.0, repr=False)
    _run_done: int = field(default=0, repr=False)
    _run_bytes: int = field(default=0, repr=False)
    _saved: float = field(default=0.0, repr=False)
    _batch: Batch | None = field(default=None, repr=False)
    _in_flight: bool = field(default=False, repr=False)   # queued or running here, its end not yet saved

    @staticmethod
    def key(node: str, study_uid: str, series_uid: str, dest: str | None) -> str:
        return key_for("download", node, study_uid, series_uid, dest or "")[:12]

    @property
    def total(self) -> int:
        return len(self.instances)

    @property
    def missing(self) -> int:
        return max(0, self.total - self.done)

    def status(self) -> JobStatus:
        rate = eta = None
        if self.state == RUNNING and self._run_started:
            seconds = time.monotonic() - self._run_started
            if seconds > 0 and self._run_done:
                rate = self._run_bytes / seconds
                eta = self.missing * seconds / self._run_done
        return JobStatus(self.id, self.state, self.node, self.method, self.study_uid, self.series_uid,
                         self.description, self.done, self.total, self.bytes, self.missing, rate, eta,
                         self.error, self.dest, self.first_path, self.listed)

    # -- on disk --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "id": self.id, "node": self.node, "method": self.method,
                "study_uid": self.study_uid, "series_uid": self.series_uid, "dest": self.dest,
                "description": self.description, "state": self.state, "done": self.done, "bytes": self.bytes,
                "error": self.error, "created": self.created, "owner": self.owner, "first_path": self.first_path,
                "listed": self.listed, "sop_classes": list(self.sop_classes), "overrides": dict(self.overrides),
                "instances": [[e.sop_instance_uid, e.sop_class_uid] for e in self.instances]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SeriesJob:
        study, series = str(data["study_uid"]), str(data["series_uid"])
        instances = [Expected(study, series, str(sop), str(sop_class)) for sop, sop_class in data["instances"]]
        return cls(id=str(data["id"]), node=str(data["node"]), method=str(data["method"]), study_uid=study,
                   series_uid=series, instances=instances, sop_classes=tuple(data.get("sop_classes") or ()),
                   dest=data.get("dest"), description=str(data.get("description") or ""),
                   state=str(data.get("state") or QUEUED), done=int(data.get("done") or 0),
                   bytes=int(data.get("bytes") or 0), error=str(data.get("error") or ""),
                   created=float(data.get("created") or 0), owner=int(data.get("owner") or 0),
                   first_path=data.get("first_path"), listed=bool(data.get("listed", True)),
                   overrides=check_overrides(dict(data.get("overrides") or {})))


class Batch:
    """The jobs of one retrieve: once one of them cannot reach the archive, the others do not try,
    and once one is paused, the jobs that join it later are kept paused too."""

    def __init__(self, progress: Callable[[int, int], object] | None = None) -> None:
        self.failure: BaseException | None = None
        self.paused = False
        self.progress = progress
        self.jobs: list[SeriesJob] = []
        self._lock = threading.Lock()

    def report(self) -> None:
        if self.progress is not None:
            with self._lock:
                done, total = sum(j.done for j in self.jobs), sum(j.total for j in self.jobs)
            self.progress(done, total)


def _save_due(job: SeriesJob) -> bool:
    """True when ``job`` was last saved :data:`SAVE_INTERVAL` s ago or more."""
    return time.monotonic() - job._saved >= SAVE_INTERVAL


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process: alive
        return True
    return True


class _SeriesLock:
    """An exclusive lock on one series of the store, held while a job of it runs."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def acquire(self, cancel: threading.Event) -> bool:
        """Take it, waiting while another job holds it; False when ``cancel`` is set first."""
        if fcntl is None:  # pragma: no cover
            return True
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if cancel.wait(_LOCK_POLL):
                    return False

    def release(self) -> None:
        os.close(self.fd)  # closing drops the flock


class DownloadManager:
    """The jobs of this machine's store, run in this process.

    Parameters
    ----------
    fetch : callable
        ``fetch(job, landing, cancel) -> cancelled`` transfers what ``landing`` still waits
        for; set ``cancel`` stops it (it returns True when something stayed pending). It
        raises the typed errors of its source.
    file_items : callable
        Files records into the catalog (``dicomnb.catalog.add_items``).
    series_parallel : int
        Series downloaded at once (default 3).
    instance_parallel : int
        Instances fetched at once within a series, for the methods that fetch instance by
        instance (WADO-URI, WADO-RS; default 4).
    list_series : callable, optional
        Lists the instances of a job made before its series was listed (``listed`` False),
        when it runs; it raises the typed errors of its source.
    """

    def __init__(self, fetch: Fetch, file_items: Callable[[list[Item]], object], *,
                 series_parallel: int = 3, instance_parallel: int = 4, list_series: ListSeries | None = None) -> None:
        self.fetch = fetch
        self.list_series = list_series
        self.file_items = file_items
        self.series_parallel = series_parallel
        self.instance_parallel = instance_parallel
        self._live: dict[tuple[str, str], SeriesJob] = {}   # (folder, id): jobs this process knows
        self._read: dict[Path, tuple[tuple[int, int], SeriesJob | None]] = {}  # state files as last parsed
        self._queue: collections.deque[SeriesJob] = collections.deque()
        self._workers = 0                                   # worker threads alive
        self._busy = 0                                      # of them, running a job
        self._changed = threading.Condition()
        self._listeners: list[Callable[[DownloadProgress], object]] = []
        self._dirty = False
        self._ticker: threading.Thread | None = None

    def __setattr__(self, name: str, value: object) -> None:
        if name in ("series_parallel", "instance_parallel") and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise DownloadError(f"{name} must be a whole number >= 1, not {value!r}")
        object.__setattr__(self, name, value)

    # -- where the jobs live ----------------------------------------------------------------------
    @staticmethod
    def folder() -> Path:
        """``<cache_dir>/downloads``: the jobs' state, beside the store."""
        return Path(settings.cache_dir) / "downloads"

    def _path(self, job_id: str) -> Path:
        return self.folder() / f"{job_id}.json"

    def _save(self, job: SeriesJob) -> None:
        job._saved = time.monotonic()
        try:
            atomic_write(self._path(job.id), json.dumps(job.to_json()).encode())
        except OSError as exc:
            raise DownloadError(f"cannot save the state of download {job.id} in {self.folder()}: "
                                f"{exc.strerror or exc}") from exc

    def _load(self, path: Path) -> SeriesJob | None:
        """The job saved in ``path``, parsed again only when the file changed (status() runs
        ten times a second while jobs run, and other jobs' files hold their whole listing)."""
        try:
            stat = path.stat()
            version = (stat.st_mtime_ns, stat.st_size)
            cached = self._read.get(path)
            if cached is not None and cached[0] == version:
                return cached[1]
            job = SeriesJob.from_json(json.loads(path.read_bytes()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, DicomnbError) as exc:
            LOGGER.warning("download state %s cannot be read (%s): ignored", path, exc)
            job = None
        self._read[path] = (version, job)
        return job

    def jobs(self) -> list[SeriesJob]:
        """Every job of the store (this process's and those left by others), oldest first.

        A job saved as queued or running by a process that is gone is ``interrupted``.
        """
        folder = str(self.folder())
        found: list[SeriesJob] = []
        paths = sorted(self.folder().glob("*.json")) if self.folder().is_dir() else []
        with self._changed:  # the ticker lists too: one reader of the parsed files at a time
            live = {job_id: job for (where, job_id), job in self._live.items() if where == folder}
            for gone in set(self._read) - set(paths):
                del self._read[gone]
            for path in paths:
                job = live.get(path.stem)
                if job is None:
                    job = self._load(path)
                    if job is None:
                        continue
                    if job.state in (QUEUED, RUNNING) and not _alive(job.owner):
                        job.state = INTERRUPTED
                found.append(job)
        found.sort(key=lambda j: (j.created, j.id))
        return found

    def get(self, job_id: str) -> SeriesJob:
        """The job ``job_id`` (DownloadError naming the known ones if there is none)."""
        return self._select([job_id], ())[0]

    def _select(self, ids: Iterable[str | SeriesJob] | None, states: Sequence[str]) -> list[SeriesJob]:
        """The jobs named (IDs or jobs), else every job in ``states``; made live in this process."""
        jobs = self.jobs()
        if ids is None:
            return [self._adopt(j) for j in jobs if j.state in states]
        known = {job.id: job for job in jobs}
        chosen = []
        for job_id in dict.fromkeys(ids):
            if isinstance(job_id, SeriesJob):
                chosen.append(self._adopt(job_id))
            elif job_id in known:
                chosen.append(self._adopt(known[job_id]))
            else:
                raise DownloadError(f"no download {job_id!r} (known: {', '.join(known) or 'none'}): "
                                    "list them with 'dicomnb downloads'")
        return chosen

    def _adopt(self, job: SeriesJob) -> SeriesJob:
        """The live copy of ``job`` in this process (it becomes live if it was only on disk)."""
        key = (str(self.folder()), job.id)
        with self._changed:
            return self._live.setdefault(key, job)

    # -- creating jobs ------------------------------------------------------------------------------
    def add(self, *, node: str, method: str, study_uid: str, series_uid: str, instances: Sequence[Expected],
            numbers: dict[str, int] | None = None, sop_classes: Sequence[str] = (), dest: str | None = None,
            description: str = "", listed: bool = True, error: str = "", queued: bool = False,
            overrides: Overrides = ()) -> SeriesJob:
        """The job of one series, made (or renewed with this listing) and saved, not started.

        A job of the same node, series and destination that is running is returned as it is.
        With ``listed=False`` the series' instances are not known yet (the listing stopped
        before it): the job lists them when it runs, and it is saved ``incomplete`` with
        ``error`` when one is given (the listing failed), else ``paused``. With ``queued``
        it is saved ``queued`` in this process, for :meth:`start` to run at once (should the
        process die before, the job reads ``interrupted``, not ``paused``). ``overrides``
        (checked by :func:`~dicomnb.core.overrides.check_overrides`) go on its records.
        """
        dest = os.path.abspath(dest) if dest else None
        job_id = SeriesJob.key(node, study_uid, series_uid, dest)
        key = (str(self.folder()), job_id)
        with self._changed:
            known = self._live.get(key)
            if known is not None and known.state in (RUNNING, QUEUED):
                return known
            job = SeriesJob(id=job_id, node=node, method=method, study_uid=study_uid, series_uid=series_uid,
                            instances=_sorted_for_preview(instances, numbers or {}), sop_classes=tuple(sop_classes),
                            dest=dest, description=description or f"series {series_uid}",
                            state=INCOMPLETE if error else QUEUED if queued else PAUSED, error=error,
                            listed=listed, owner=os.getpid() if queued else 0, overrides=tuple(overrides))
            if known is not None:
                job.created = known.created
            self._live[key] = job
        self._save(job)
        return job

    # -- running them -----------------------------------------------------------------------------
    def start(self, jobs: Iterable[SeriesJob], batch: Batch | None = None) -> list[SeriesJob]:
        """Queue these jobs (those not running or complete already); return the jobs queued.

        Jobs with nothing landed yet go first: every series gets its preview soonest, and a
        series partly there, which C-GET and C-MOVE ask for instance by instance (an archive
        looks those up one by one before sending anything: Orthanc takes 20-40 ms for 50,
        against 2-7 ms for a whole series), has its wait overlap the others' transfers.
        Each job starts as soon as it is saved, not once all are.
        """
        queued, held = [], []
        for job in sorted((self._adopt(job) for job in jobs), key=lambda job: job.done > 0):
            with self._changed:
                if batch is not None and batch.paused and job._batch is not batch:
                    # its retrieve was paused while it was still starting its jobs: keep it paused
                    job._batch = batch
                    batch.jobs.append(job)
                    if job.state == QUEUED and not job._in_flight:
                        job.state = PAUSED
                        held.append(job)
                    continue
                if job.state in (RUNNING, QUEUED) and job.owner == os.getpid() and job._in_flight:
                    continue
                if job.state in (RUNNING, QUEUED) and job.owner != os.getpid() and _alive(job.owner):
                    job.error = f"running in process {job.owner}"
                    continue
                before = (job.state, job.owner)
                # made queued by add() moments ago: the disk says so already
                saved = before == (QUEUED, os.getpid()) and not job.error and not job._in_flight
                job.state, job.owner, job.error, job.exception = QUEUED, os.getpid(), "", None
                job._cancel, job._in_flight = CancelEvent(), True
                if batch is not None:
                    job._batch = batch
                elif job._batch is not None:
                    # resumed: its retrieve reports again, tries again, and is no longer paused
                    job._batch.failure, job._batch.paused = None, False
            try:
                if not saved:
                    self._save(job)  # before it runs: a job the disk does not know is never queued
            except DownloadError:
                with self._changed:
                    (job.state, job.owner), job._in_flight = before, False
                raise
            with self._changed:
                if batch is not None and job not in batch.jobs:
                    batch.jobs.append(job)
                self._queue.append(job)
                queued.append(job)
                self._spawn()
        for job in held:
            self._save(job)
        with self._changed:
            self._touch()
        return queued

    def _spawn(self) -> None:
        """A worker per queued job, while fewer than ``series_parallel`` run (``_changed`` held)."""
        while self._workers < self.series_parallel and self._workers - self._busy < len(self._queue):
            self._workers += 1
            threading.Thread(target=self._work, name="dicomnb-download", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._changed:
                job = None
                while self._queue and job is None:
                    candidate = self._queue.popleft()
                    if candidate.state == QUEUED:
                        job = candidate
                if job is None:
                    self._workers -= 1
                    self._changed.notify_all()
                    return
                job.state = RUNNING
                self._busy += 1
            try:
                self._run(job)
            except BaseException as exc:  # pragma: no cover - a bug: keep the worker, say it
                LOGGER.exception("download %s failed", job.id)
                job.exception, job.error, job.state = exc, f"{type(exc).__name__}: {exc}", INCOMPLETE
            finally:
                with contextlib.suppress(DownloadError):
                    self._save(job)  # before anyone waiting hears it ended: they may exit at once
                with self._changed:
                    self._busy -= 1
                    job._in_flight = False
                    self._changed.notify_all()
                self._touch()

    def _run(self, job: SeriesJob) -> None:
        batch = job._batch
        if batch is not None and batch.failure is not None:
            job.state, job.exception = INCOMPLETE, None
            job.error = f"not started: {batch.failure}"
            return
        lock = _SeriesLock(self.folder() / "locks" / f"{key_for('series', job.study_uid, job.series_uid)}.lock")
        try:
            if not lock.acquire(job._cancel):
                job.state = PAUSED
                return
            if _save_due(job):
                # saved queued (by start) moments ago, it reads "running" on disk at its next
                # save: a pause and resume of many jobs does not write every job twice at once
                self._save(job)
            if not job.listed and not self._list(job):
                return
            self._clean_partial(job)
            landing = Landing(job.instances, self.file_items, source=_SOURCES.get(job.method, job.method),
                              origin=job.node, dest=job.dest, progress=lambda done, total: self._progress(job, landing),
                              overrides=job.overrides)
            # resumed where it was paused: the records of what landed need no second reading
            landing.file_stored({r.SOPInstanceUID: r for r in job.result.instances} if job.result else None)
            job.done, job.bytes = len(landing.records), _stored_bytes(landing)
            self._first(job, landing)
            job._run_started, job._run_done, job._run_bytes = time.monotonic(), 0, 0
            landing.on_bytes = lambda count: self._count_bytes(job, count)
            cancelled = False
            try:
                if landing.pending:
                    cancelled = self.fetch(job, landing, job._cancel)
            except DicomnbError as exc:
                job.exception = exc
                if batch is not None and batch.failure is None and not landing.records:
                    batch.failure = exc
            result = landing.result(job.node, job.study_uid, job.method)
            result.cancelled = cancelled
            job.result = result
            job.done = len(result.instances)
            if job.exception is not None:
                job.state, job.error = INCOMPLETE, str(job.exception)
            elif cancelled or (job._cancel.is_set() and result.missing):
                job.state, job.error = PAUSED, ""
            elif result.missing:
                job.state = INCOMPLETE
                job.error = result.errors[0] if result.errors else f"{len(result.missing)} instances did not arrive"
            else:
                job.state, job.error = COMPLETE, ""
        finally:
            lock.release()

    def _list(self, job: SeriesJob) -> bool:
        """List the instances of a job made before its series was listed; False when it cannot run."""
        if job._cancel.is_set():
            job.state = PAUSED
            return False
        if self.list_series is None:
            job.state, job.error = INCOMPLETE, "its series was never listed, and nothing here can list it"
            return False
        try:
            instances, numbers, sop_classes = self.list_series(job)
        except DicomnbError as exc:
            job.state, job.exception, job.error = INCOMPLETE, exc, f"not listed: {exc}"
            batch = job._batch
            if batch is not None and batch.failure is None:
                batch.failure = exc
            return False
        job.instances = _sorted_for_preview(instances, numbers)
        job.sop_classes = tuple(dict.fromkeys([*job.sop_classes, *sop_classes]))
        job.listed = True
        self._save(job)
        return True

    def _clean_partial(self, job: SeriesJob) -> None:
        """Remove what a killed process left half-written in the series' folders (none is in use: locked)."""
        folders = [instance_path(job.study_uid, job.series_uid, "").parent]
        if job.dest:
            folders.append(instance_path(job.study_uid, job.series_uid, "", root=Path(job.dest)).parent)
        for folder in folders:
            for partial in folder.glob(".part-*") if folder.is_dir() else ():
                with contextlib.suppress(OSError):
                    partial.unlink()

    def _first(self, job: SeriesJob, landing: Landing) -> None:
        if job.first_path is None and landing.records:
            job.first_path = next(iter(landing.records.values())).path

    def _count_bytes(self, job: SeriesJob, count: int) -> None:
        job.bytes += count
        job._run_bytes += count

    def _progress(self, job: SeriesJob, landing: Landing) -> None:
        job.done = len(landing.records)
        job._run_done += 1
        self._first(job, landing)
        if job._batch is not None:
            job._batch.report()
        if _save_due(job):
            with contextlib.suppress(DownloadError):
                self._save(job)
        self._touch()

    # -- pause, resume, retry, cancel ----------------------------------------------------------------
    def pause(self, ids: Iterable[str | SeriesJob] | None = None) -> list[SeriesJob]:
        """Pause these jobs (default: every queued or running one of this process).

        A running C-GET or C-MOVE is cancelled (C-CANCEL), WADO-URI and WADO-RS stop between
        two instances; what arrived stays. Returns at once: :meth:`wait` for them to stop.
        """
        jobs = self._select(ids, (QUEUED, RUNNING))
        queued = []
        for job in jobs:  # every running job is told first; the queued ones are saved after
            with self._changed:
                if job._batch is not None:
                    job._batch.paused = True
                job._cancel.set()
                if job.state == QUEUED:
                    job.state = PAUSED
                    queued.append(job)
                    with contextlib.suppress(ValueError):
                        self._queue.remove(job)
        for job in queued:
            self._save(job)
            with self._changed:
                job._in_flight = False
                self._changed.notify_all()
        self._touch()
        return jobs

    def resume(self, ids: Iterable[str | SeriesJob] | None = None) -> list[SeriesJob]:
        """Start these jobs again (default: every unfinished one); they fetch only what is missing."""
        return self.start(self._select(ids, (PAUSED, INCOMPLETE, INTERRUPTED, QUEUED)))

    def retry_missing(self, ids: Iterable[str | SeriesJob] | None = None) -> list[SeriesJob]:
        """Download the missing files again: run the incomplete jobs (default: all of them) once more."""
        return self.start(self._select(ids, (INCOMPLETE, INTERRUPTED)))

    def cancel(self, ids: Iterable[str | SeriesJob]) -> list[SeriesJob]:
        """Stop these jobs and forget them; what they had landed stays in the store and the catalog."""
        jobs = self._select(ids, ())
        self.pause([j for j in jobs if j.state in (QUEUED, RUNNING)])
        self.wait(jobs)
        for job in jobs:
            with self._changed:
                self._live.pop((str(self.folder()), job.id), None)
            try:
                self._path(job.id).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise DownloadError(f"cannot forget download {job.id}: {self._path(job.id)}: "
                                    f"{exc.strerror or exc}") from exc
        self._touch()
        return jobs

    def clear(self) -> list[SeriesJob]:
        """Forget the complete jobs (their files stay)."""
        return self.cancel([j for j in self.jobs() if j.state == COMPLETE])

    def wait(self, jobs: Iterable[SeriesJob] | None = None, timeout: float | None = None,
             cancel: threading.Event | None = None) -> bool:
        """Wait until these jobs (default: all of this process) stop; True when they all did.

        With ``cancel``: once it is set, the jobs are paused (and waited for).
        """
        wanted = list(jobs) if jobs is not None else None
        deadline = None if timeout is None else time.monotonic() + timeout
        paused = False

        def busy() -> bool:
            pool = wanted if wanted is not None else list(self._live.values())
            return any(j._in_flight for j in pool)

        with self._changed:
            while busy():
                if cancel is not None and cancel.is_set() and not paused:
                    paused = True  # the lock is reentrant: pausing from here is safe
                    self.pause([j for j in (wanted or list(self._live.values())) if j._in_flight])
                    continue
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                # jobs notify their changes; only a cancel (an Event, which cannot) is polled for
                poll = CANCEL_POLL if cancel is not None else 0.05
                self._changed.wait(min(left, poll) if left is not None else poll)
        self._touch()
        return True

    # -- progress ---------------------------------------------------------------------------------
    def status(self) -> DownloadProgress:
        """Every job's status now."""
        return DownloadProgress(tuple(job.status() for job in self.jobs()))

    def subscribe(self, listener: Callable[[DownloadProgress], object]) -> Callable[[], None]:
        """Call ``listener(progress)`` as jobs progress (at most every :data:`UPDATE_INTERVAL` s,
        from a background thread); return the function that unsubscribes it."""
        with self._changed:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._changed, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def _touch(self) -> None:
        """Something changed: the ticker tells the listeners within UPDATE_INTERVAL."""
        with self._changed:
            self._dirty = True
            if self._listeners and (self._ticker is None or not self._ticker.is_alive()):
                self._ticker = threading.Thread(target=self._tick, name="dicomnb-progress", daemon=True)
                self._ticker.start()

    def _tick(self) -> None:
        idle = 0
        while True:
            time.sleep(UPDATE_INTERVAL)
            with self._changed:
                dirty, self._dirty = self._dirty, False
                listeners = list(self._listeners)
                active = self._workers > 0
            if dirty and listeners:
                progress = self.status()
                for listener in listeners:
                    try:
                        listener(progress)
                    except Exception:  # a listener's bug must not stop the downloads
                        LOGGER.exception("a download progress listener failed")
            idle = 0 if (dirty or active) else idle + 1
            if idle > 5 or not listeners:
                with self._changed:
                    if not self._dirty:
                        self._ticker = None
                        return


#: The source name a method's records carry in the catalog.
_SOURCES = {"c-get": "dimse", "c-move": "dimse", "wado-uri": "wado-uri", "wado-rs": "dicomweb"}


def _stored_bytes(landing: Landing) -> int:
    total = 0
    for record in landing.records.values():
        with contextlib.suppress(OSError):
            total += os.path.getsize(record.path)
    return total
