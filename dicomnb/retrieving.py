"""Retrieve from an archive through the download manager: ``dicomnb.retrieve`` and ``dicomnb.downloads``.

>>> result = dicomnb.retrieve("orthanc", study_uid)        # one download job per series, waited for
>>> dicomnb.downloads                                       # the jobs: state, done/total, missing
>>> dicomnb.downloads.pause(); dicomnb.downloads.resume()   # every method pauses and resumes
>>> dicomnb.downloads.retry_missing()                       # "Download the missing files again"
>>> dicomnb.downloads.panel()                               # progress bars, pause/resume, cancel

A retrieve lists the study first (C-FIND at IMAGE level, or QIDO-RS), makes one
:class:`~dicomnb.core.downloads.SeriesJob` per series, and runs them
(:class:`~dicomnb.core.downloads.DownloadManager`). Each job's transfer is
:func:`fetch_series`: C-GET or C-MOVE of the series (IMAGE level by SOP Instance UID for
what is still missing), or WADO-URI / WADO-RS instance by instance in preview order.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from dicomnb.core.downloads import CANCEL_POLL, COMPLETE, PAUSED, Batch, DownloadManager, JobStatus, SeriesJob
from dicomnb.core.errors import ConfigError, CriteriaError, DicomnbError, RetrieveIncomplete
from dicomnb.core.nodes import AnyNode, CallingNode, DicomWebNode, NodeStore
from dicomnb.core.overrides import check_overrides
from dicomnb.core.retrieval import Expected, Landing, RetrieveResult, StudyContents
from dicomnb.network import _target

if TYPE_CHECKING:
    from dicomnb.sources.wado_rs import Unlisted

LOGGER = logging.getLogger(__name__)

__all__ = ["NODE_METHODS", "RETRIEVE_METHODS", "Downloads", "check_method", "downloads", "fetch_series", "retrieve"]

#: Retrieve methods, and the source name their records carry in the catalog.
RETRIEVE_METHODS = {"c-get": "dimse", "c-move": "dimse", "wado-uri": "wado-uri", "wado-rs": "dicomweb"}
#: The methods each kind of node retrieves with (the first is the default).
NODE_METHODS = {"dimse": ("c-get", "c-move", "wado-uri"), "dicomweb": ("wado-rs",)}


def check_method(target: AnyNode, method: str | None) -> str:
    """The retrieve method to use for ``target`` (its default when None), or ConfigError."""
    allowed = NODE_METHODS[target.kind]
    if method is None:
        return allowed[0]
    if method not in RETRIEVE_METHODS:
        raise ConfigError(f"unknown retrieve method {method!r}: choose {', '.join(RETRIEVE_METHODS)}")
    if method not in allowed:
        kind = "a DICOMweb" if target.kind == "dicomweb" else "a DIMSE"
        raise ConfigError(f"node {target.name!r} is {kind} node: retrieve it with {' or '.join(allowed)}, "
                          f"not {method}")
    return method


def fetch_series(job: SeriesJob, landing: Landing, cancel: threading.Event, *, instance_parallel: int = 4,
                 timeout: float = 30) -> bool:
    """Transfer what ``landing`` waits for of ``job``'s series, by the job's method; True when cancelled.

    The node is looked up by name when the job runs, so a resumed job uses the node as
    saved now (a changed port, a new secret). A job that carries its own ``fetch`` in
    ``job.runtime`` (a manifest's WADO-URI requests, :mod:`dicomnb.manifests`) runs that instead.
    """
    own = job.runtime.get("fetch")
    if own is not None:
        return bool(own(job, landing, cancel, parallel=instance_parallel))
    target, calling, timeout = _job_peer(job, timeout)
    method = check_method(target, job.method)
    if isinstance(target, DicomWebNode):
        from dicomnb.sources.wado_rs import retrieve_wado_rs

        # instance by instance: a series asked for whole would be sent on by the archive past a
        # pause (it writes ahead into the socket), and the resume would fetch those again
        return retrieve_wado_rs(target, landing, timeout=timeout, parallel=instance_parallel, per_instance=True,
                                cancel=cancel)
    if method == "wado-uri":
        from dicomnb.sources.wado_uri import retrieve_wado_uri

        return retrieve_wado_uri(target, landing, timeout=timeout, parallel=instance_parallel, cancel=cancel)
    from dicomnb.sources.retrieve import retrieve_dimse

    return retrieve_dimse(target, landing, method=method, sop_classes=job.sop_classes, calling=calling,
                          timeout=timeout, parallel=1, cancel=cancel)


#: The kinds of archive a manifest or a ``$dicom:rs`` command names (``manifest:1001``, ``rs:host:8042``):
#: not saved nodes, their headers kept in the memory of the process that read them.
COMMAND_ARCHIVES = ("manifest", "rs")


def _job_peer(job: SeriesJob, timeout: float) -> tuple[AnyNode, CallingNode, float]:
    """The node, calling node and timeout a job runs with (given objects, else as saved now)."""
    store = NodeStore.load()
    target = job.runtime.get("node")
    if target is None:
        try:
            target = store.get(job.node)
        except ConfigError as exc:
            if job.node.split(":", 1)[0] not in COMMAND_ARCHIVES:
                raise
            raise ConfigError(
                f"{job.node} is an archive a manifest or a $dicom:rs command named in another process, which "
                "kept its address and headers: run that manifest or command again to finish this series "
                "(what arrived is kept and not fetched again)") from exc
    return target, job.runtime.get("calling") or store.calling, job.runtime.get("timeout", timeout)


def list_series(job: SeriesJob, *, timeout: float = 30) -> tuple[list[Expected], dict[str, int], list[str]]:
    """The instances of ``job``'s series, listed now (QIDO-RS, or C-FIND at IMAGE level).

    For a job made before its series was listed (the study's listing was paused or cut
    off): ``(instances, instance numbers, SOP classes)``.
    """
    target, calling, timeout = _job_peer(job, timeout)
    listing = job.runtime.pop("listing", None)  # the study's listing of it, still under way at a pause
    if listing is not None:
        try:
            rows = listing.result(timeout=timeout)
        except FutureTimeout:
            LOGGER.info("listing series %s again: the listing under way at the pause did not end", job.series_uid)
        except Exception as exc:  # noqa: BLE001 - whatever it was, asking again says it anew
            LOGGER.info("listing series %s again: the listing under way at the pause failed (%s)", job.series_uid, exc)
        else:
            contents = StudyContents()
            contents.add_rows(rows, job.study_uid)
            return contents.instances, contents.numbers, contents.sop_classes
    contents = _list(target, job.study_uid, [job.series_uid], calling, timeout, lambda uid, listed: None)
    return contents.instances, contents.numbers, contents.sop_classes


class Downloads(DownloadManager):
    """The download jobs of this machine's store (``dicomnb.downloads``).

    ``dicomnb.downloads()`` (or ``.jobs()``) lists them; in a notebook it shows as a table.
    Every verb takes job IDs (default: every job it applies to) and returns the jobs it
    acted on: :meth:`pause`, :meth:`resume`, :meth:`retry_missing`, :meth:`cancel`,
    :meth:`clear`, :meth:`wait`. :meth:`panel` is the ipywidgets download panel.
    """

    #: Seconds allowed for connecting and between two messages, for jobs resumed here.
    timeout: float = 30

    def __init__(self) -> None:
        from dicomnb.api import catalog

        super().__init__(self._fetch, catalog.add_items, list_series=self._list_series)

    def _fetch(self, job: SeriesJob, landing: Landing, cancel: threading.Event) -> bool:
        return fetch_series(job, landing, cancel, instance_parallel=self.instance_parallel, timeout=self.timeout)

    def _list_series(self, job: SeriesJob) -> tuple[list[Expected], dict[str, int], list[str]]:
        return list_series(job, timeout=self.timeout)

    def __call__(self) -> list[JobStatus]:
        return [job.status() for job in self.jobs()]

    @property
    def frame(self) -> Any:
        """The jobs as a DataFrame (one row per series: state, done, total, missing, bytes...)."""
        import pandas as pd

        rows = [status.to_json() for status in self()]
        columns = list(JobStatus.__dataclass_fields__)
        return pd.DataFrame(rows, columns=columns)

    def panel(self) -> Any:
        """The download panel (ipywidgets): one row per series, pause/resume, cancel, retry."""
        from dicomnb.widgets.downloads import DownloadPanel

        return DownloadPanel(self)

    def __repr__(self) -> str:
        statuses = self()
        if not statuses:
            return "<downloads: none>"
        lines = [f"<downloads: {len(statuses)} job{'' if len(statuses) == 1 else 's'}>"]
        lines += [f"  {s.id}  {s.text:<40}  {s.node}  {s.description}" for s in statuses]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self():
            return "<p>No downloads.</p>"
        frame = self.frame[["id", "state", "done", "total", "missing", "node", "method", "description", "error"]]
        return str(frame.to_html(index=False))


#: The download jobs of this process and of the store (see :class:`Downloads`).
downloads = Downloads()


def _list(target: AnyNode, study_uid: str, series_uids: Sequence[str] | None, calling: CallingNode,
          timeout: float, start_series: Callable[[str, StudyContents], object], *,
          cancel: threading.Event | None = None,
          unlisted: Unlisted | None = None) -> StudyContents:
    """List the study; call ``start_series(series_uid, contents)`` as each series is listed.

    Over DICOMweb, once ``cancel`` is set or a listing failed, the series left are handed
    to ``unlisted(series_uid, series_row, failure, listing)`` instead (see ``list_study``).
    """
    if isinstance(target, DicomWebNode):
        from dicomnb.sources.wado_rs import list_study

        contents = StudyContents()
        lock = threading.Lock()

        def each(series_uid: str, series_row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
            with lock:
                contents.series[series_uid] = series_row
                contents.add_rows(rows, study_uid)
            start_series(series_uid, contents)

        list_study(target, study_uid, series_uids, each, timeout=timeout, cancel=cancel, unlisted=unlisted)
        return contents
    from dicomnb.sources.retrieve import list_instances

    contents = list_instances(target, study_uid, series_uids, calling=calling, timeout=timeout)
    for series_uid in contents.by_series():
        start_series(series_uid, contents)
    return contents


def retrieve(
    node: str | AnyNode,
    study_uid: str,
    series_uids: Sequence[str] | None = None,
    *,
    method: str | None = None,
    dest: str | os.PathLike[str] | None = None,
    calling: CallingNode | None = None,
    timeout: float = 30,
    progress: Callable[[int, int], object] | None = None,
    parallel: int | None = None,
    raise_incomplete: bool = True,
    cancel: threading.Event | None = None,
    runtime: dict[str, Any] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> RetrieveResult:
    """Retrieve a study (or some of its series) into the local store and the catalog.

    The instances are listed first (C-FIND at IMAGE level; QIDO-RS for a DICOMweb node,
    each series' download starting as soon as it is listed). Each series becomes a
    download job (:data:`downloads`), saved beside the store, so an interrupted retrieve can
    be resumed later, even from another process (``dicomnb downloads resume``). Instances
    the store holds complete are not fetched again; the others are written atomically to
    the store as they arrive and filed into :data:`dicomnb.catalog` (source ``"dimse"``,
    ``"wado-uri"`` or ``"dicomweb"``, origin the node's name). What arrived is then compared
    with what was listed.

    Parameters
    ----------
    node : str, DicomNode or DicomWebNode
        A saved node's name, or a node (a job resumed by another process finds it by name
        among the saved nodes).
    study_uid : str
        The StudyInstanceUID.
    series_uids : sequence of str, optional
        Only these series of the study (default: all of them).
    method : {"c-get", "c-move", "wado-uri", "wado-rs"}, optional
        C-GET (one association per series, nothing to declare on the archive; the default
        for DIMSE nodes); C-MOVE (the archive must know our calling AE title and Storage SCP
        port, see ``calling``); WADO-URI (HTTP GET per instance at the node's ``wado_url``);
        WADO-RS (DICOMweb nodes, their only method and default).
    dest : path, optional
        A folder that also gets a copy of every instance (hard-linked when it can be). A
        resumed job finishes into it too.
    calling : CallingNode, optional
        Our AE title, and for C-MOVE the address and port our Storage SCP listens on
        (default: the saved calling node, ``DICOMNB`` on 127.0.0.1:11113).
    timeout : float
        Seconds allowed for connecting and between two messages from the archive.
    progress : callable, optional
        Called as ``progress(done, total)`` over the whole retrieve as instances land (from
        worker threads), also when its jobs are resumed later in this process.
        :meth:`downloads.subscribe <dicomnb.core.downloads.DownloadManager.subscribe>` gives
        per-series progress with bytes, rate and ETA.
    parallel : int, optional
        Series downloaded at once while it runs (default: ``downloads.series_parallel``, 3).
    raise_incomplete : bool
        Raise :class:`~dicomnb.errors.RetrieveIncomplete` when instances are missing
        (default); with False, return the result and let ``result.missing`` say so.
    cancel : threading.Event, optional
        Set it from another thread to pause: C-GET and C-MOVE send C-CANCEL and keep what
        arrives until the archive ends (a second at most, then the associations are aborted),
        WADO-URI and WADO-RS stop between two instances; the jobs are left paused and the
        result says ``cancelled`` (no RetrieveIncomplete). ``downloads.resume()`` (or
        retrieving again) fetches only the missing instances.
    runtime : dict, optional
        Kept with each of its jobs in this process (``SeriesJob.runtime``): ``{"node": other}``
        transfers with another node than the one the study is listed with (``$dicom:rs``'s
        ``--retrieve-header``, :mod:`dicomnb.rs`).
    overrides : mapping of str to str, optional
        Values the catalog's records show in place of the files' own, by DICOM keyword
        (``{"PatientName": "Doe^Jane"}``), also in the datasets read through them; the files
        stay as the archive sent them. Kept with the jobs, so a resumed job applies them too.
        A manifest's ``overrideDicomTagsList`` uses this.

    Returns
    -------
    RetrieveResult
        ``.retrieved`` (fetched this time), ``.instances`` (records in the catalog),
        ``.missing``, ``.errors``, ``.seconds``, ``.jobs`` (the series' job IDs), ``.to_json()``.

    Raises
    ------
    RetrieveIncomplete
        Instances listed did not arrive (and it was not cancelled); ``.missing`` lists their
        SOP Instance UIDs and ``.result`` is the :class:`RetrieveResult`. The jobs stay
        ``incomplete``: ``downloads.retry_missing()`` fetches just those.
    InputError
        ``overrides`` names an attribute that is not a DICOM keyword or cannot be overridden.
    ConfigError
        No saved node of that name, an unknown method, no WADO-URI URL, a bad transfer
        syntax file, or (C-MOVE) a Storage SCP port that cannot be listened on.
    ConnectionFailed, AssociationRejected, AssociationAborted, QueryFailed, AuthenticationFailed
        The archive could not be reached, refused, aborted or answered with a failure
        (``QueryFailed.status``: 0xA701/0xA702 out of resources, 0xA801 unknown move
        destination, 0xC000 unable to process; None when it went silent). Raised once the
        other series have ended; the jobs that did not finish stay ``incomplete`` and
        ``downloads.retry_missing()`` finishes them.
    DownloadError
        The jobs' state cannot be saved (the cache is not writable).
    """
    if not isinstance(study_uid, str) or not study_uid.strip():
        raise CriteriaError("a retrieve needs the StudyInstanceUID of the study")
    if parallel is not None and (isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1):
        raise ConfigError(f"parallel must be a whole number >= 1, not {parallel!r}")
    shown = check_overrides(overrides)
    study_uid = study_uid.strip()
    store = NodeStore.load()
    target = _target(store, node)
    method = check_method(target, method)
    given_calling = calling
    calling = calling or store.calling
    if cancel is not None and cancel.is_set():
        return RetrieveResult(node=target.name, study_uid=study_uid, method=method, cancelled=True)
    if method == "wado-uri" and not getattr(target, "wado_url", None):
        raise ConfigError(f"node {target.name!r} has no WADO-URI URL: add it with "
                          f"'dicomnb node add {target.name} ... --wado-url http://host:8042/wado --replace'")
    started = time.monotonic()
    jobs: list[SeriesJob] = []
    lock = threading.Lock()

    def pause_started() -> None:
        with lock:
            running = [job for job in jobs if job._in_flight]
        downloads.pause(running)

    batch = Batch(progress)
    dest_path = os.fspath(dest) if dest is not None else None
    saved_parallel = downloads.series_parallel
    if parallel is not None:
        downloads.series_parallel = parallel

    def keep(job: SeriesJob) -> None:
        # a node or calling node given as an object stays with the job; a name is looked up
        # when the job runs, so a node saved anew (a fixed port) serves its retry
        job.runtime.update(timeout=timeout)
        if not isinstance(node, str):
            job.runtime["node"] = target
        if given_calling is not None:
            job.runtime["calling"] = given_calling
        job.runtime.update(runtime or {})
        jobs.append(job)

    def start_series(series_uid: str, contents: StudyContents) -> None:
        with lock:
            instances = contents.by_series().get(series_uid, [])
            if not instances:
                return
            job = downloads.add(node=target.name, method=method, study_uid=study_uid, series_uid=series_uid,
                                instances=instances, numbers=contents.numbers, sop_classes=contents.sop_classes,
                                dest=dest_path, description=contents.label(series_uid), queued=True,
                                overrides=shown)
            keep(job)
        if cancel is not None and cancel.is_set():
            downloads.pause([job])  # paused while the study was being listed: saved paused, for resume()
            return
        downloads.start([job], batch)

    def left_unlisted(series_uid: str, row: dict[str, Any], failure: BaseException | None,
                      listing: Future[list[dict[str, Any]]] | None = None) -> None:
        # the listing stopped before this series: its job lists it when resumed (from the
        # listing still under way at the pause, when there is one: the rows are not asked twice)
        with lock:
            job = downloads.add(node=target.name, method=method, study_uid=study_uid, series_uid=series_uid,
                                instances=[], dest=dest_path, listed=False, overrides=shown,
                                description=StudyContents(series={series_uid: row}).label(series_uid),
                                error=f"not listed: {failure}" if failure is not None else "")
            if listing is not None:
                job.runtime["listing"] = listing
            keep(job)

    finished = threading.Event()
    pauser = None
    if cancel is not None:
        # the cancel, waited for: it pauses the series started at once (also while the study
        # is still being listed)
        pauser = threading.Thread(target=_pause_when, args=(cancel, finished, pause_started), daemon=True,
                                  name="dicomnb-retrieve-pause")
        pauser.start()
    listing_failure: DicomnbError | None = None
    try:
        try:
            _list(target, study_uid, series_uids, calling, timeout, start_series, cancel=cancel,
                  unlisted=left_unlisted)
        except DicomnbError as exc:
            if not any(not job.listed for job in jobs):
                raise  # no job keeps what was left: the archive's own error says what to fix
            listing_failure = exc
        finally:
            downloads.wait(jobs, cancel=cancel)
    finally:
        finished.set()
        if pauser is not None and cancel is not None and cancel.is_set():
            pauser.join()  # it has paused the jobs, or ends at once: none of the retrieve's threads outlives it
        downloads.series_parallel = saved_parallel
    return _finish(jobs, target, study_uid, method, started, raise_incomplete, cancel, listing_failure)


def _pause_when(cancel: threading.Event, finished: threading.Event, pause: Callable[[], object]) -> None:
    """``pause()`` the jobs started as soon as ``cancel`` is set, until the retrieve ends (``finished``)."""
    while not finished.is_set():
        if cancel.wait(CANCEL_POLL):
            pause()
            return


def _finish(jobs: Iterable[SeriesJob], target: AnyNode, study_uid: str, method: str, started: float,
            raise_incomplete: bool, cancel: threading.Event | None,
            listing_failure: BaseException | None = None) -> RetrieveResult:
    """The result over the jobs of a retrieve: their first network error, or RetrieveIncomplete."""
    jobs = list(jobs)
    # paused through ``cancel``, or from elsewhere (the panel, downloads.pause()): not a failure
    result = RetrieveResult(node=target.name, study_uid=study_uid, method=method,
                            cancelled=bool(cancel is not None and cancel.is_set())
                            or any(job.state == PAUSED for job in jobs))
    missing: list[str] = []
    for job in jobs:
        result.expected += job.total
        if job.result is not None:
            result.retrieved += job.result.retrieved
            result.instances += job.result.instances
            result.errors += job.result.errors
            missing += job.result.missing
        else:
            missing += [e.sop_instance_uid for e in job.instances]
    failures = [job.exception for job in jobs if job.exception is not None]
    if listing_failure is not None:
        failures.insert(0, listing_failure)
    unlisted = [job for job in jobs if not job.listed]
    result.errors += [str(failure) for failure in failures]
    result.missing = tuple(missing)
    result.unlisted = tuple(job.series_uid for job in unlisted)
    result.jobs = [job.id for job in jobs]
    result.seconds = time.monotonic() - started
    if result.cancelled:
        return result
    if failures and not result.retrieved:
        raise failures[0]  # nothing came: the archive's own error says what to fix
    if (result.missing or unlisted) and (raise_incomplete or failures) and any(job.state != COMPLETE for job in jobs):
        shown = ", ".join(result.missing[:3]) + (" ..." if len(result.missing) > 3 else "")
        cause = failures[0] if failures else None
        lost = (f"{len(result.missing)} of {result.expected} instances listed by {target.name} did not arrive "
                f"({shown})") if result.missing else f"every instance listed by {target.name} arrived"
        if unlisted:
            lost += f", and {len(unlisted)} series could not be listed"
        raise RetrieveIncomplete(
            f"{lost}; {len(result.instances)} are in the catalog: retrieve again, or "
            "dicomnb.downloads.retry_missing(), to fetch the missing ones"
            + (f" ({cause or result.errors[0]})" if cause or result.errors else ""),
            missing=result.missing, result=result) from cause
    return result
