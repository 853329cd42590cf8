"""Retrieve what a Weasis manifest names, through the download manager.

>>> result = dicomnb.manifests.retrieve_manifest("https://pacs/weasis/manifest?studyUID=1.2.3")
>>> result.messages            # the archive's <Message>s, to show the user
>>> dicomnb.downloads          # one job per series, as for dicomnb.retrieve: pause, resume, retry

A manifest (:mod:`dicomnb.core.manifest`) is read first: a file, an http(s) URL (fetched here
with dicomnb's own HTTP client, redirects followed, gzip told by content) or bytes. Then each
of its archives (``arcQuery``) becomes download jobs (:data:`dicomnb.retrieving.downloads`), one
per series, so that progress, pause, resume and "retry the missing" work as for any retrieve:

- a WADO-URI archive (``queryMode`` DICOM or DB): its instances are known up front, so each
  series' job is made at once with them (no listing), and it fetches each instance from the URL
  Weasis would use (``baseUrl?requestType=WADO&...`` with the series' transfer syntax, or
  ``DirectDownloadFile``, and ``additionalParameters``), with the archive's ``httpTag`` headers;
- a DICOMweb archive (``queryMode="DICOM_WEB"``): the series that list their instances become
  WADO-RS jobs at once; a study without series, or series without instances, is completed with
  QIDO-RS and retrieved with :func:`dicomnb.retrieve`; a patient without studies has its studies
  found with QIDO-RS first.

``$dicom:rs -u URL -r studyUID=...`` (:func:`dicomnb.rs.retrieve_rs`) takes the same DICOMweb
path, with :class:`_Run` (the jobs and completions of one retrieve) from here.

The archives a manifest or command names are not saved nodes: their headers (``Authorization``
included) stay in this process's memory. So their jobs resume in this process
(``downloads.resume()``); in another one, run the manifest again: what the store holds is not
fetched again. :func:`stop_downloads` stops and forgets the downloads of studies or series
(``$dicom:close``), including those whose study is still being listed.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from dicomnb.core.criteria import SearchCriteria
from dicomnb.core.downloads import CANCEL_POLL, PAUSED, QUEUED, RUNNING, Batch, SeriesJob
from dicomnb.core.errors import ConfigError, DicomnbError, ManifestError, QueryFailed, RetrieveIncomplete
from dicomnb.core.manifest import (
    MAX_MANIFEST_BYTES,
    ArcQuery,
    Manifest,
    Message,
    Series,
    Severity,
    load_manifest,
)
from dicomnb.core.model import InstanceRecord
from dicomnb.core.nodes import DicomWebNode
from dicomnb.core.overrides import Overrides, check_overrides
from dicomnb.core.retrieval import Expected, Landing, RetrieveResult, StudyContents
from dicomnb.retrieving import COMMAND_ARCHIVES, downloads, retrieve
from dicomnb.sources.http import HttpClient, Response, network_error, status_error

__all__ = [
    "MAX_REDIRECTS",
    "ManifestResult",
    "body_chunks",
    "fetch_manifest",
    "message_json",
    "open_url",
    "read_manifest",
    "retrieve_manifest",
    "search_studies",
    "shown_url",
    "stop_downloads",
    "studies_of_patient",
]

LOGGER = logging.getLogger(__name__)

#: Redirects followed when fetching a manifest or a file by URL.
MAX_REDIRECTS = 5
#: Studies completed over DICOMweb at the same time (each lists its series, then its series'
#: jobs share the download manager's ``series_parallel``).
STUDY_PARALLEL = 2
#: Seconds a ``$dicom:close`` waits for the retrieves of its studies to stop listing.
STOP_WAIT = 30.0

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ACCEPT_MANIFEST = "application/xml, application/json, text/xml, */*;q=0.5"
_ACCEPT_INSTANCE = "application/dicom, */*;q=0.5"
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_HINTS = {
    400: "the server refuses the request: is the manifest's baseUrl its WADO-URI address?",
    405: "the server does not take GET here: is the manifest's baseUrl its WADO-URI address?",
}


# --- HTTP -----------------------------------------------------------------------------------------

def shown_url(url: str) -> str:
    """``url`` as messages show it: scheme, host, port and path (no user, password or query,
    which may hold a session or a token)."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


@contextlib.contextmanager
def open_url(url: str, *, accept: str, what: str, timeout: float = 30,
             headers: Sequence[tuple[str, str]] = ()) -> Iterator[Response]:
    """GET an http(s) ``url``, following up to :data:`MAX_REDIRECTS` redirects; yield the answer
    (HTTP 200), its body still to read.

    Raises
    ------
    ConfigError
        Not an http(s) URL.
    ConnectionFailed
        The server cannot be reached, refuses TLS, or is silent for ``timeout``.
    QueryFailed, AuthenticationFailed
        An HTTP error status (``what`` says what was asked for), or too many redirects.
    """
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        where = shown_url(url)
        client = HttpClient(f"{parts.scheme}://{parts.netloc}", where=where, timeout=timeout, headers=headers)
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            with client.get(target, accept) as response:
                location = response.header("Location")
                if response.status in _REDIRECTS and location:
                    url = urljoin(url, location)
                    continue
                if response.status != 200:
                    raise status_error(where, response.status, what)
                yield response
                return
        finally:
            client.close()
    raise QueryFailed(f"{shown_url(url)}: more than {MAX_REDIRECTS} redirects for {what}: check the URL")


def body_chunks(response: Response, url: str, *, timeout: float = 30, size: int = 1 << 20) -> Iterator[bytes]:
    """The body of an answer from :func:`open_url`, ``size`` bytes at a time.

    Raises
    ------
    ConnectionFailed
        The connection broke, or went silent for ``timeout``, before the end of the body.
    """
    while True:
        try:
            chunk = response.raw.read(size)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise network_error(shown_url(url), exc, timeout, urlsplit(url).port) from exc
        if not chunk:
            return
        yield chunk


def fetch_manifest(url: str, *, timeout: float = 30, headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """The bytes of the manifest at ``url`` (XML or JSON, gzipped or not: told later by content).

    Raises
    ------
    ManifestError
        Larger than :data:`~dicomnb.core.manifest.MAX_MANIFEST_BYTES`.
    ConnectionFailed, QueryFailed, AuthenticationFailed
        As :func:`open_url` and :func:`body_chunks`.
    """
    with open_url(url, accept=_ACCEPT_MANIFEST, what="the request for the manifest", timeout=timeout,
                  headers=headers) as response:
        chunks: list[bytes] = []
        size = 0
        for chunk in body_chunks(response, url, timeout=timeout, size=1 << 16):
            size += len(chunk)
            if size > MAX_MANIFEST_BYTES:
                raise ManifestError(f"{shown_url(url)}: the manifest is larger than "
                                    f"{MAX_MANIFEST_BYTES // 2**20} MiB: refused")
            chunks.append(chunk)
    return b"".join(chunks)


def read_manifest(source: bytes | str | os.PathLike[str], *, timeout: float = 30) -> Manifest:
    """Read a manifest from bytes, a file, a ``file:`` URI or an http(s) URL (:func:`fetch_manifest`).

    Raises
    ------
    ManifestError
        Unreadable, a bad schema or an unknown version (see :func:`~dicomnb.core.manifest.parse_manifest`).
    ConnectionFailed, QueryFailed, AuthenticationFailed
        The manifest's URL could not be fetched.
    """
    return load_manifest(source, fetch=functools.partial(fetch_manifest, timeout=timeout))


# --- the archives named by a manifest or a command --------------------------------------------------

def _archive_name(kind: str, arc_id: str, url: str) -> str:
    """The name a command's archive goes by in the download jobs: ``manifest:1001``, ``rs:host:8042``."""
    assert kind in COMMAND_ARCHIVES
    return f"{kind}:{arc_id.strip() or urlsplit(url).netloc}"


def _checked_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    checked = []
    for name, value in headers:
        if not _HEADER_NAME.match(name):
            raise ConfigError(f"{name!r} is not an HTTP header name")
        if any(c in value for c in "\r\n\0"):
            raise ConfigError(f"the HTTP header {name} has a value that is not one line of text")
        checked.append((name, value.strip()))
    return tuple(checked)


@dataclass(frozen=True, repr=False)
class _CommandWebNode(DicomWebNode):
    """A DICOMweb root a manifest or a ``$dicom:rs`` names: never saved, its headers sent as given.

    A saved node refuses ``Authorization`` or ``Cookie`` among its headers (they would be written
    to the node file); a command's are kept in this process's memory only, and never shown.
    """

    def __post_init__(self) -> None:
        given = _checked_headers(self.headers)
        object.__setattr__(self, "headers", ())
        super().__post_init__()
        object.__setattr__(self, "headers", given)

    def __repr__(self) -> str:
        return f"<DICOMweb {shown_url(self.url)} ({self.name}, not saved)>"

    def to_json(self) -> dict[str, Any]:
        raise ConfigError(f"{self.name} comes from a command and is not saved: add a node with dicomnb.add_node")


def _web_node(kind: str, arc_id: str, url: str, headers: Mapping[str, str], extra_query: str = "") -> _CommandWebNode:
    """The DICOMweb node of a manifest's archive or a ``$dicom:rs`` URL, extra parameters in its query."""
    base = url.strip().rstrip("/")
    extra = extra_query.strip().lstrip("&?")
    if extra:
        base += ("&" if "?" in base else "?") + extra
    return _CommandWebNode(name=_archive_name(kind, arc_id, url), url=base, headers=tuple(headers.items()))


# --- what a retrieve brought -------------------------------------------------------------------------

@dataclass(repr=False)
class ManifestResult(RetrieveResult):
    """What retrieving a manifest (or a ``$dicom:rs`` command) brought back: a
    :class:`~dicomnb.core.retrieval.RetrieveResult` over every study it names, with the archive's
    messages.

    Attributes
    ----------
    messages : tuple of Message
        The manifest's ``<Message>``s (and "nothing found" for a query that matched nothing):
        show them to the user.
    expected, retrieved, instances, missing, unlisted, errors, cancelled, jobs, seconds
        As for :func:`dicomnb.retrieve`, over every study: ``cancelled`` also when its downloads
        were stopped by ``$dicom:close``; ``dicomnb.downloads.retry_missing()``, or retrieving
        the manifest again, fetches what is ``missing``.
    failures : list of DicomnbError
        The typed errors behind ``errors`` (an archive unreachable, refusing us...).
    """

    node: str = "manifest"
    study_uid: str = ""
    method: str = ""
    messages: tuple[Message, ...] = ()
    failures: list[DicomnbError] = field(default_factory=list)

    @property
    def message(self) -> str:
        stored = len(self.instances) - self.retrieved
        text = (f"{'stopped: ' if self.cancelled else ''}{self.retrieved} instance"
                f"{'' if self.retrieved == 1 else 's'} retrieved in {self.seconds:.1f} s")
        if stored:
            text += f", {stored} already in the store"
        if self.missing:
            text += f"; {len(self.missing)} of {self.expected} missing: retry them with dicomnb.downloads.retry_missing()"
        return text + self.unlisted_words()

    def to_json(self) -> dict[str, Any]:
        """``RetrieveResult.to_json()`` and ``"messages"``, ``"errors"``, ``"jobs"``."""
        return {**super().to_json(), "messages": [message_json(m) for m in self.messages],
                "errors": list(self.errors), "jobs": list(self.jobs)}

    def __repr__(self) -> str:
        return f"<ManifestResult: {self.message}>"


def message_json(message: Message) -> dict[str, str]:
    """A manifest message as JSON: ``{"title", "description", "severity"}``."""
    return {"title": message.title, "description": message.description, "severity": message.severity.value}


def _show(messages: Iterable[Message]) -> None:
    for message in messages:
        level = logging.INFO if message.severity is Severity.INFO else logging.WARNING
        LOGGER.log(level, "message from the archive: %s: %s", message.title, message.description)


# --- the studies being retrieved, for $dicom:close -------------------------------------------------------

class _Study:
    """A study a running manifest or command retrieves: ``cancel`` stops it starting anything more;
    ``settled`` is set once it has started (or given up) everything it will."""

    __slots__ = ("cancel", "settled", "uid")

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.cancel = threading.Event()
        self.settled = threading.Event()


_lock = threading.Lock()
_running: dict[str, list[_Study]] = {}
_patients: dict[str, set[str]] = {}


def studies_of_patient(patient_id: str) -> set[str]:
    """The StudyInstanceUIDs that manifests and ``$dicom:rs`` searches of this process gave
    ``patient_id`` (their instances may not have arrived yet)."""
    with _lock:
        return set(_patients.get(patient_id, ()))


def stop_downloads(*, studies: Iterable[str] = (), series: Iterable[str] = (), everything: bool = False) -> list[str]:
    """Stop and forget the downloads of these studies or series (all of them with ``everything``).

    A manifest or ``$dicom:rs`` still listing one of these studies starts nothing more for it;
    then every download job of them (running, paused, finished) is cancelled: what arrived stays
    in the store. Returns the IDs of the jobs stopped.
    """
    study_uids, series_uids = set(studies), set(series)
    with _lock:
        stopping = [s for uid, entries in _running.items() if everything or uid in study_uids for s in entries]
    for study in stopping:
        study.cancel.set()
    deadline = time.monotonic() + STOP_WAIT
    for study in stopping:  # a listing under way ends its request: then its jobs are all known
        study.settled.wait(max(0.0, deadline - time.monotonic()))
    jobs = [job for job in downloads.jobs()
            if everything or job.study_uid in study_uids or job.series_uid in series_uids]
    downloads.cancel(jobs)
    return [job.id for job in jobs]


# --- one retrieve of a manifest or command ----------------------------------------------------------------

class _Progress:
    """``progress(done, total)`` over several retrieves and batches, each reporting its own sums."""

    def __init__(self, callback: Callable[[int, int], object] | None) -> None:
        self.callback = callback
        self.parts: dict[object, tuple[int, int]] = {}
        self.lock = threading.Lock()

    def part(self, key: object) -> Callable[[int, int], None] | None:
        if self.callback is None:
            return None

        def report(done: int, total: int) -> None:
            with self.lock:
                self.parts[key] = (done, total)
                done_all = sum(d for d, _ in self.parts.values())
                total_all = sum(t for _, t in self.parts.values())
            assert self.callback is not None
            self.callback(done_all, total_all)

        return report


class _Run:
    """The jobs and DICOMweb completions of one manifest or command, and their result."""

    def __init__(self, progress: Callable[[int, int], object] | None, cancel: threading.Event | None,
                 dest: str | os.PathLike[str] | None, timeout: float) -> None:
        self.progress = _Progress(progress)
        self.cancel = cancel
        self.dest = os.fspath(dest) if dest is not None else None
        self.timeout = timeout
        self.started = time.monotonic()
        self.jobs: list[SeriesJob] = []
        self.results: list[RetrieveResult] = []
        self.failures: list[DicomnbError] = []
        self.messages: list[Message] = []
        self.studies: list[_Study] = []
        self.closed = False  # a study was closed ($dicom:close) before it started
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(STUDY_PARALLEL, thread_name_prefix="dicomnb-manifest")
        self.futures: list[Future[None]] = []
        self.done = threading.Event()
        if cancel is not None:
            threading.Thread(target=self._watch, name="dicomnb-manifest-cancel", daemon=True).start()

    def _watch(self) -> None:
        """Once ``cancel`` is set: the studies start nothing more, the started jobs pause."""
        assert self.cancel is not None
        while not self.done.is_set():
            if self.cancel.wait(CANCEL_POLL):
                with self.lock:
                    studies, jobs = list(self.studies), [j for j in self.jobs if j.state in (QUEUED, RUNNING)]
                for study in studies:
                    study.cancel.set()
                downloads.pause(jobs)
                return

    # -- studies ---------------------------------------------------------------------------------
    def study(self, study_uid: str, patient_id: str = "") -> _Study:
        study = _Study(study_uid)
        if self.cancel is not None and self.cancel.is_set():
            study.cancel.set()
        with _lock:
            _running.setdefault(study_uid, []).append(study)
            if patient_id:
                _patients.setdefault(patient_id, set()).add(study_uid)
        with self.lock:
            self.studies.append(study)
        return study

    def _closed(self, study: _Study) -> bool:
        """True (and noted) when ``study`` was closed by ``$dicom:close``, not paused by ``cancel``."""
        if not study.cancel.is_set() or (self.cancel is not None and self.cancel.is_set()):
            return False
        self.closed = True
        return True

    @staticmethod
    def settle(study: _Study) -> None:
        with _lock:
            entries = _running.get(study.uid, [])
            if study in entries:
                entries.remove(study)
            if not entries:
                _running.pop(study.uid, None)
        study.settled.set()

    # -- work --------------------------------------------------------------------------------------
    def submit(self, work: Callable[[], None]) -> None:
        self.futures.append(self.pool.submit(self._guarded, work))

    def _guarded(self, work: Callable[[], None]) -> None:
        try:
            work()
        except DicomnbError as exc:
            with self.lock:
                self.failures.append(exc)

    def note(self, title: str, description: str) -> None:
        with self.lock:
            self.messages.append(Message(title, description, Severity.WARN))

    def start_series(self, study_uid: str, patient_id: str, batch: Batch, node: str, method: str,
                     series: Sequence[tuple[Series, dict[str, Any]]],
                     overrides: Mapping[str, str] | None = None) -> None:
        """Make and start one job per series of a study whose instances are known: ``series`` pairs
        each (with its instances) with what its job runs with (``SeriesJob.runtime``); its records
        show ``overrides`` (:meth:`ArcQuery.overrides`)."""
        study = self.study(study_uid, patient_id)
        try:
            if not series or self._closed(study):
                return  # nothing to fetch, or closed before it started
            shown = check_overrides(overrides)
            jobs = [self._job(node, method, study_uid, one, runtime, shown) for one, runtime in series]
            with self.lock:
                self.jobs += jobs
            if study.cancel.is_set():
                downloads.pause(jobs)  # paused before it started: saved paused, for resume()
            else:
                downloads.start(jobs, batch)
        finally:
            self.settle(study)

    def _job(self, node: str, method: str, study_uid: str, series: Series, runtime: dict[str, Any],
             overrides: Overrides) -> SeriesJob:
        uid = series.series_instance_uid
        wanted = {i.sop_instance_uid: i for i in series.instances}  # a multi-frame one is listed per frame
        row = {"Modality": series.modality, "SeriesNumber": series.series_number,
               "SeriesDescription": series.series_description}
        job = downloads.add(
            node=node, method=method, study_uid=study_uid, series_uid=uid,
            instances=[Expected(study_uid, uid, sop, i.sop_class_uid or "") for sop, i in wanted.items()],
            numbers={sop: i.instance_number for sop, i in wanted.items() if i.instance_number is not None},
            sop_classes=tuple(dict.fromkeys(i.sop_class_uid for i in wanted.values() if i.sop_class_uid)),
            dest=self.dest, description=StudyContents(series={uid: row}).label(uid), queued=True,
            overrides=overrides)
        job.runtime.update(timeout=self.timeout, **runtime)
        return job

    def retrieve_study(self, node: DicomWebNode, study_uid: str, series_uids: Sequence[str] | None, *,
                       patient_id: str = "", runtime: dict[str, Any] | None = None,
                       overrides: Mapping[str, str] | None = None) -> None:
        """List (QIDO-RS) and retrieve (WADO-RS) a study, or some of its series, with :func:`retrieve`."""
        study = self.study(study_uid, patient_id)
        try:
            if self._closed(study):
                return
            try:
                result = retrieve(node, study_uid, series_uids, dest=self.dest, timeout=self.timeout,
                                  progress=self.progress.part(study), raise_incomplete=False, cancel=study.cancel,
                                  runtime=runtime, overrides=overrides)
            except RetrieveIncomplete as exc:
                result = exc.result
                if isinstance(exc.__cause__, DicomnbError):
                    with self.lock:
                        self.failures.append(exc.__cause__)
            with self.lock:
                self.results.append(result)
        finally:
            self.settle(study)

    # -- the end -----------------------------------------------------------------------------------
    def run(self, plans: Sequence[Callable[..., None]], messages: Sequence[Message],
            raise_incomplete: bool) -> ManifestResult:
        """Run each ``plan(run)`` (they make and start the jobs), then :meth:`finish`."""
        try:
            for plan in plans:
                plan(self)
        except BaseException:
            with self.lock:  # what started stays, paused, for resume()
                for study in self.studies:
                    study.cancel.set()
                started = [j for j in self.jobs if j.state in (QUEUED, RUNNING)]
            downloads.pause(started)
            with contextlib.suppress(DicomnbError):
                self.finish((), raise_incomplete=False)
            raise
        return self.finish(messages, raise_incomplete)

    def finish(self, messages: Sequence[Message], raise_incomplete: bool) -> ManifestResult:
        try:
            for future in list(self.futures):
                future.result()
        finally:
            self.pool.shutdown(wait=True)
            try:
                downloads.wait(self.jobs, cancel=self.cancel)
            finally:
                self.done.set()
                for study in self.studies:
                    self.settle(study)
        return self._result(messages, raise_incomplete)

    def _result(self, messages: Sequence[Message], raise_incomplete: bool) -> ManifestResult:
        result = ManifestResult(messages=(*messages, *self.messages))
        records: dict[str, InstanceRecord] = {}
        missing: list[str] = []
        failures: list[DicomnbError] = list(self.failures)
        cancelled = self.closed or (self.cancel is not None and self.cancel.is_set())
        for job in self.jobs:
            result.expected += job.total
            cancelled = cancelled or job.state == PAUSED
            if job.result is not None:
                result.retrieved += job.result.retrieved
                records.update((r.SOPInstanceUID, r) for r in job.result.instances)
                result.errors += job.result.errors
                missing += job.result.missing
            else:
                missing += [e.sop_instance_uid for e in job.instances]
            if isinstance(job.exception, DicomnbError):
                failures.append(job.exception)
        for retrieved in self.results:
            result.expected += retrieved.expected
            result.retrieved += retrieved.retrieved
            records.update((r.SOPInstanceUID, r) for r in retrieved.instances)
            result.errors += [e for e in retrieved.errors if e not in result.errors]
            missing += retrieved.missing
            result.unlisted += retrieved.unlisted
            result.jobs += retrieved.jobs
            cancelled = cancelled or retrieved.cancelled
        result.jobs = [job.id for job in self.jobs] + result.jobs
        result.instances = list(records.values())
        result.missing = tuple(dict.fromkeys(sop for sop in missing if sop not in records))
        result.errors += [str(f) for f in failures if str(f) not in result.errors]
        result.failures = failures
        result.cancelled = cancelled
        result.seconds = time.monotonic() - self.started
        if cancelled:
            return result
        if failures and not result.retrieved:
            raise failures[0]  # nothing came: the archive's own error says what to fix
        if result.missing and (raise_incomplete or failures):
            shown = ", ".join(result.missing[:3]) + (" ..." if len(result.missing) > 3 else "")
            cause = failures[0] if failures else None
            raise RetrieveIncomplete(
                f"{len(result.missing)} of {result.expected} instances did not arrive ({shown}); "
                f"{len(result.instances)} are in the catalog: dicomnb.downloads.retry_missing(), or "
                "retrieving the manifest again, fetches the missing ones"
                + (f" ({cause or result.errors[0]})" if cause or result.errors else ""),
                missing=result.missing, result=result) from cause
        return result


# --- WADO-URI: a manifest's own requests ------------------------------------------------------------

def _fetch_urls(job: SeriesJob, landing: Landing, cancel: threading.Event, *, parallel: int,
                urls: Mapping[str, str], headers: Sequence[tuple[str, str]], name: str, base_url: str,
                timeout: float) -> bool:
    """Fetch what ``landing`` waits for, each instance from its manifest URL; True when paused with
    instances still pending (the ``fetch`` of a manifest's WADO-URI jobs, run by the download
    manager). Messages name the archive's ``baseUrl``, or the server of a ``DirectDownloadFile``
    elsewhere."""
    base = urlsplit(base_url)
    pending = [e for series in landing.pending_by_series().values() for e in series]
    if not pending or cancel.is_set():
        return bool(pending)
    clients: dict[str, HttpClient] = {}
    lock = threading.Lock()
    failed = threading.Event()

    def client_for(url: str) -> tuple[HttpClient, str]:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with lock:
            client = clients.get(origin)
            if client is None:
                where = f"{name} ({shown_url(base_url) if parts.netloc == base.netloc else origin})"
                client = clients[origin] = HttpClient(origin, where=where, timeout=timeout, headers=headers)
        return client, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def fetch(instance: Expected) -> None:
        if failed.is_set() or cancel.is_set():
            return
        try:
            client, target = client_for(urls[instance.sop_instance_uid])
            with client.get(target, _ACCEPT_INSTANCE) as response:
                body = client.read(response)
            sop = instance.sop_instance_uid
            if response.status == 404:
                landing.note(f"{client.where}: instance {sop} not found (HTTP 404)")
            elif response.status != 200:
                raise status_error(client.where, response.status, f"the request for instance {sop}", _HINTS)
            else:
                landing.land(sop, body, sender=client.where)
        except BaseException:
            failed.set()
            raise

    try:
        with ThreadPoolExecutor(max(1, min(parallel, len(pending))), thread_name_prefix="dicomnb-wado") as pool:
            futures = [pool.submit(fetch, instance) for instance in pending]
            errors = [error for error in (future.exception() for future in futures) if error is not None]
    finally:
        for client in clients.values():
            client.close()
    if errors:
        raise errors[0]
    return cancel.is_set() and bool(landing.missing)


def _plan_wado_uri(run: _Run, *, arc: ArcQuery, index: int) -> None:
    """One job per series of a WADO-URI archive, its instances and their URLs known up front."""
    name = _archive_name("manifest", arc.arc_id, arc.base_url)
    headers = tuple(arc.headers().items())
    urls = {(r.study_instance_uid, r.series_instance_uid, r.sop_instance_uid): r.url for r in arc.wado_requests()}
    batch = Batch(run.progress.part(("arc", index)))
    for patient in arc.patients:
        for study in patient.studies:
            uid = study.study_instance_uid
            listed = []
            for series in study.series:
                if not series.instances:
                    LOGGER.info("%s: series %s lists no instance: nothing to fetch", name, series.series_instance_uid)
                    continue
                own = {i.sop_instance_uid: urls[(uid, series.series_instance_uid, i.sop_instance_uid)]
                       for i in series.instances}
                listed.append((series, {"fetch": functools.partial(
                    _fetch_urls, urls=own, headers=headers, name=name, base_url=arc.base_url, timeout=run.timeout)}))
            run.start_series(uid, patient.patient_id, batch, name, "wado-uri", listed, arc.overrides(patient, study))


def search_studies(run: _Run, node: DicomWebNode, criteria: Sequence[SearchCriteria], *, what: str,
                   most_recent: int | None = None, runtime: dict[str, Any] | None = None,
                   overrides: Mapping[str, str] | None = None) -> None:
    """Find studies with QIDO-RS (with each of ``criteria``), then retrieve each whole; a search
    that matches nothing gives a "Nothing found" message naming ``what`` was looked for. The
    records show ``overrides``."""
    from dicomnb.sources.dicomweb import search

    rows: dict[str, dict[str, Any]] = {}
    for one in criteria:
        for row in search(node, one, "study", timeout=run.timeout):
            if row.get("StudyInstanceUID"):
                rows.setdefault(str(row["StudyInstanceUID"]), row)
    found = list(rows.values())
    if most_recent is not None:
        found.sort(key=lambda r: (str(r.get("StudyDate") or ""), str(r.get("StudyTime") or "")), reverse=True)
        found = found[:most_recent]
    if not found:
        run.note("Nothing found", f"{node.name}: no study matches {what}")
    for row in found:
        run.retrieve_study(node, str(row["StudyInstanceUID"]), None, patient_id=str(row.get("PatientID") or ""),
                           runtime=runtime, overrides=overrides)


def _plan_dicom_web(run: _Run, *, arc: ArcQuery, index: int) -> None:
    """A DICOMweb archive: WADO-RS jobs for the series listed whole, QIDO-RS for the rest."""
    node = _web_node("manifest", arc.arc_id, arc.base_url, arc.headers(), arc.additional_parameters)
    batch = Batch(run.progress.part(("arc", index)))
    for patient in arc.patients:
        if not patient.studies:
            if patient.issuer_of_patient_id:
                LOGGER.info("%s: the studies of patient %s are found by PatientID only (not by its issuer)",
                            node.name, patient.patient_id)
            run.submit(functools.partial(search_studies, run, node, [SearchCriteria(patient_id=patient.patient_id)],
                                         what=f"PatientID {patient.patient_id}", overrides=arc.overrides(patient)))
            continue
        for study in patient.studies:
            uid = study.study_instance_uid
            partial = [se.series_instance_uid for se in study.series if not se.instances]
            overrides = arc.overrides(patient, study)
            if not study.series or partial:
                run.submit(functools.partial(run.retrieve_study, node, uid, partial or None,
                                             patient_id=patient.patient_id, overrides=overrides))
            run.start_series(uid, patient.patient_id, batch, node.name, "wado-rs",
                             [(se, {"node": node}) for se in study.series if se.instances], overrides)


def retrieve_manifest(
    manifest: Manifest | bytes | str | os.PathLike[str],
    *,
    progress: Callable[[int, int], object] | None = None,
    cancel: threading.Event | None = None,
    dest: str | os.PathLike[str] | None = None,
    timeout: float = 30,
    raise_incomplete: bool = True,
) -> ManifestResult:
    """Retrieve every instance a Weasis manifest names into the store and the catalog.

    Each series becomes a download job (:data:`dicomnb.downloads`): progress, pause (``cancel``),
    ``downloads.resume()`` and ``downloads.retry_missing()`` work as for :func:`dicomnb.retrieve`,
    and instances the store holds already are not fetched again. WADO-URI archives fetch each
    instance from the URL Weasis builds (the manifest's ``httpTag`` headers sent); DICOMweb
    archives (``queryMode="DICOM_WEB"``) complete what they leave out with QIDO-RS and retrieve
    with WADO-RS. The manifest's messages are logged, and returned for the caller to show.

    Parameters
    ----------
    manifest : Manifest, bytes, str or path
        A parsed manifest, or where to read it: a file, a ``file:`` URI, an http(s) URL
        (:func:`fetch_manifest`) or its bytes (XML or JSON, gzipped or not).
    progress : callable, optional
        ``progress(done, total)`` over the whole manifest as instances land (from worker
        threads); the total grows as DICOMweb completions list their studies.
    cancel : threading.Event, optional
        Set it to pause: the jobs stop between two instances and stay paused (resume them with
        ``dicomnb.downloads.resume()``); the result says ``cancelled``.
    dest : path, optional
        A folder that also gets a copy of every instance.
    timeout : float
        Seconds allowed for connecting and between two pieces of an answer.
    raise_incomplete : bool
        Raise :class:`~dicomnb.errors.RetrieveIncomplete` when instances are missing (default);
        with False, ``result.missing`` says so.

    Returns
    -------
    ManifestResult

    Raises
    ------
    ManifestError
        The manifest cannot be read: a bad schema, an unknown version, a required attribute missing.
    ConnectionFailed
        An archive (its ``baseUrl``, named in the message) cannot be reached, and nothing came.
    QueryFailed, AuthenticationFailed, MalformedResponse
        An archive answered with an error, and nothing came.
    RetrieveIncomplete
        Some instances did not arrive (``.missing``; ``.result`` the :class:`ManifestResult`).
    """
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest, timeout=timeout)
    _show(manifest.messages)
    arcs = [arc for arc in manifest.arc_queries if arc.patients]
    for arc in arcs:  # what cannot be sent is said before anything starts
        if arc.is_dicom_web:
            _web_node("manifest", arc.arc_id, arc.base_url, arc.headers(), arc.additional_parameters)
        else:
            _checked_headers(arc.headers().items())
    return _Run(progress, cancel, dest, timeout).run(
        [functools.partial(_plan_dicom_web if arc.is_dicom_web else _plan_wado_uri, arc=arc, index=index)
         for index, arc in enumerate(arcs)], manifest.messages, raise_incomplete)
