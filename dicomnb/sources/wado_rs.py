"""Retrieve with WADO-RS (PS3.18 10.4): listing and retrieving side by side, streamed into the store.

:func:`list_study` lists the instances of a study series by series (QIDO-RS,
:class:`~dicomnb.sources.dicomweb.StudyListing`) and hands over each series as soon as it is
listed: ``dicomnb.retrieve`` starts that series' download
(:mod:`dicomnb.core.downloads`) while the next ones are being listed.
:func:`retrieve_wado_rs` fetches what a :class:`~dicomnb.core.retrieval.Landing` waits for:
a download's series, instance by instance, so that it can pause between two.

Each series (or instance) is asked for as ``multipart/related; type="application/dicom";
transfer-syntax=*`` (the files as the archive holds them), and each part is streamed into a
temporary file in the store, which :meth:`~dicomnb.core.retrieval.Landing.land_file`
identifies from its header and renames into place: memory stays bounded whatever the size
of a series. What arrives is checked against what was listed.

What the listing costs, and why it overlaps the retrieve (Orthanc 1.10.1, DICOMweb 1.7, 2 cores)
-------------------------------------------------------------------------------------------------
Orthanc's DICOMweb plugin answers an instance-level QIDO-RS by reading the tags of every
instance it lists (``/instances/{id}/tags``: the file parsed), whatever is asked: one
``includefield`` or ten, the default attributes (Rows, Columns...) or not, per series
(``/studies/{s}/series/{x}/instances``), per study (``/studies/{s}/instances``) or as
``/instances?StudyInstanceUID=``: each costs it about 2.1 ms of CPU per instance listed
(100 instances: 210 ms; ``limit=1``: 5 ms). The WADO-RS of the same 1,000 instances is read
in 0.07–0.09 s. So the listing, not the transfer, is what a checked retrieve waits for:

- it asks only what a retrieve needs (:data:`RETRIEVE_FIELDS`: servers that keep other
  attributes outside their index are spared reading them);
- it lists :data:`LIST_PARALLEL` series at a time (the 1,000 instances: 2.15 s one series at
  a time, 1.4 s two, 1.15 s four; more gain nothing);
- each series' download starts as soon as it is listed, so that writing, checking and
  filing its parts here runs while the server lists the next series.

On 2 cores the server and dicomnb share the CPU, and both are busy: listing 1,000 instances
costs Orthanc 2.2–2.7 CPU seconds, receiving them costs dicomnb about 1 (parts parsed,
files created and checked, records filed), so the whole retrieve takes 1.6–1.8 s where the
listing alone takes 1.15 s and the retrieve of a study listed beforehand 0.65 s: side by
side gains 1–9 % over one after the other here, more where the server has cores to spare
(``benchmarks/results.md``).

(Orthanc answers a series' WADO-RS metadata in about half the time of its QIDO-RS, but with
some 19 kB of JSON per instance, and it is not a search: the listing stays QIDO-RS.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from dicomnb.core.downloads import CANCEL_POLL
from dicomnb.core.errors import ConfigError, ConnectionFailed, DownloadError, MalformedResponse
from dicomnb.core.nodes import DicomWebNode
from dicomnb.core.retrieval import Expected, Landing
from dicomnb.core.store import instance_path
from dicomnb.sources.dicomweb import StudyListing, _authorization, _client
from dicomnb.sources.http import HttpClient, Response, check_timeout, quote_segment, status_error
from dicomnb.sources.multipart import DATA, END, HEADERS, MultipartParser, content_type

__all__ = ["ACCEPT_DICOM", "RETRIEVE_FIELDS", "list_study", "retrieve_wado_rs"]

LOGGER = logging.getLogger(__name__)

#: What WADO-RS is asked for: Part 10 files in the transfer syntax the archive holds them in.
ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'
#: The IMAGE-level attributes a retrieve's listing asks back (the UIDs come from the path).
RETRIEVE_FIELDS = ("SOPClassUID", "SOPInstanceUID", "InstanceNumber")
#: ``unlisted(series_uid, series_row, failure, listing)``: a series :func:`list_study` leaves unlisted.
Unlisted = Callable[[str, dict[str, Any], BaseException | None, "Future[list[dict[str, Any]]] | None"], object]
#: Series listed at the same time by :func:`list_study`.
LIST_PARALLEL = 4
#: Bytes read at a time from a WADO-RS answer (per connection).
CHUNK = 1 << 20

_RETRIEVE_HINTS = {
    406: "the server cannot send the files as stored (transfer-syntax=*)",
}


def _check_parallel(parallel: object) -> int:
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise ConfigError(f"parallel must be a whole number >= 1, not {parallel!r}")
    return parallel


# --- one answer -----------------------------------------------------------------------------------

def _parser(response: Response, client: HttpClient, what: str) -> MultipartParser | None:
    """The parser of a WADO-RS answer (None: the answer is one application/dicom file).

    Raises
    ------
    MalformedResponse
        Neither multipart/related nor application/dicom.
    """
    media, parameters = content_type(response.header("Content-Type"))
    if media == "application/dicom":
        return None
    if media != "multipart/related" or not parameters.get("boundary"):
        raise MalformedResponse(f"{client.where} answered {what} with {media!r}, not multipart/related "
                                "DICOM: is the node's URL (or its WADO-RS URL) the DICOMweb root?")
    return MultipartParser(parameters["boundary"])


def _receive(response: Response, parser: MultipartParser | None, client: HttpClient, landing: Landing,
             folder: str, what: str, cancel: threading.Event | None = None) -> None:
    """Stream a WADO-RS answer's parts into temporary files in ``folder``; land each one.

    Once ``cancel`` is set, it stops after the part being received (the rest of the answer is
    left unread: the connection is then closed, not reused).

    Raises
    ------
    MalformedResponse
        Cut short; the part being written is deleted, the parts complete before it stay landed.
    ConnectionFailed
        The connection failed or went silent in the middle.
    DownloadError
        The store cannot be written (full, or not writable).
    """
    part = _PartFile(folder, client.where, what)
    length = response.header("Content-Length")
    # A small answer (one instance) needs no megabyte of buffer.
    view = memoryview(bytearray(min(CHUNK, max(1 << 16, int(length) if length.isdigit() else CHUNK))))
    try:
        if parser is None:
            part.begin({"content-length": length})
        while True:
            try:
                count = response.raw.readinto(view)
            except (OSError, ValueError) as exc:
                raise client.failure(exc) from exc
            if not count:
                break
            if parser is None:
                part.write(view[:count])
                continue
            for kind, value in parser.feed(view[:count]):
                if kind == DATA:
                    part.write(value)
                elif kind == HEADERS:
                    part.begin(value)
                elif kind == END:
                    landing.land_file(part.end(), sender=client.where)
                    if cancel is not None and cancel.is_set():
                        return  # paused between two instances
        if parser is None:
            landing.land_file(part.end(), sender=client.where)
        else:
            try:
                parser.finish()
            except MalformedResponse as exc:
                raise MalformedResponse(f"{client.where}: the answer to the retrieve of {what} is not "
                                        f"usable: {exc}: try again; if it happens again, see the server's "
                                        "log") from exc
    finally:
        part.discard()  # a part cut short: nothing half-written stays


class _PartFile:
    """The temporary file one part is streamed into, in the store folder it will be renamed in."""

    def __init__(self, folder: str, where: str, what: str) -> None:
        self.folder, self.where, self.what = folder, where, what
        self.fd, self.path, self.size, self.declared = -1, "", 0, ""
        self.made = False  # the folder exists

    def _store_error(self, exc: OSError) -> DownloadError:
        return DownloadError(f"cannot write the retrieve of {self.what} into the store ({self.folder}): "
                             f"{exc.strerror or exc}: free some space, or check the cache folder's permissions")

    def begin(self, headers: dict[str, str]) -> None:
        self.discard()
        try:
            if not self.made:
                os.makedirs(self.folder, exist_ok=True)
                self.made = True
            self.fd, self.path = tempfile.mkstemp(prefix=".part-", dir=self.folder)
        except OSError as exc:
            raise self._store_error(exc) from exc
        self.size, self.declared = 0, headers.get("content-length", "")

    def write(self, data: bytes | memoryview) -> None:
        if self.fd < 0:
            raise MalformedResponse(f"{self.where}: the answer to the retrieve of {self.what} has data "
                                    "outside its parts")
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            raise self._store_error(exc) from exc
        self.size += len(data)

    def end(self) -> str:
        """Close the file; return its path (the caller lands it)."""
        os.close(self.fd)
        self.fd = -1
        if self.declared.isdigit() and int(self.declared) != self.size:
            raise MalformedResponse(f"{self.where}: a part of the retrieve of {self.what} holds {self.size} "
                                    f"bytes where its header says {self.declared}")
        path, self.path = self.path, ""
        return path

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.path = ""


# --- the requests of one retrieve ---------------------------------------------------------------

def _requests(instances: Sequence[Expected], whole_series: bool, per_instance: bool) -> list[tuple[Expected, bool]]:
    """(instance, whole series?) to ask for: the series in one request when nothing of it is stored."""
    if not instances:
        return []
    if whole_series and not per_instance:
        return [(instances[0], True)]
    return [(instance, False) for instance in instances]


class _Requests:
    """The WADO-RS requests of one retrieve into one landing, run from worker threads.

    The first failure is kept and stops what has not started (:meth:`guarded`); the caller
    raises it once the requests under way have ended. With ``keep_going``, an answer that
    breaks off once it has begun (cut short, or silent) is noted in the landing and its
    instances left missing, as a 404 leaves them, and the other requests go on.
    """

    def __init__(self, node: DicomWebNode, landing: Landing, timeout: float, auth: str | None, *,
                 keep_going: bool, cancel: threading.Event) -> None:
        self.client = _client(node, node.wado, timeout, auth)
        self.landing = landing
        self.keep_going = keep_going
        self.cancel = cancel
        self.failures: list[BaseException] = []  # in the order they happened: the first is the cause
        self.sent = 0
        self._lock = threading.Lock()

    def guarded(self, work: Callable[..., None], *args: Any) -> None:
        """Run ``work(*args)`` unless something failed already or it is cancelled; keep its failure."""
        if self.failures or self.cancel.is_set():
            return
        try:
            work(*args)
        except BaseException as exc:
            with self._lock:
                self.failures.append(exc)
            raise  # into the worker's future, which no one reads: the caller raises failures[0]

    def fetch(self, instance: Expected, whole: bool) -> None:
        study, series = quote_segment(instance.study_uid), quote_segment(instance.series_uid)
        path = f"/studies/{study}/series/{series}"
        what = f"series {instance.series_uid}"
        if not whole:
            path += f"/instances/{quote_segment(instance.sop_instance_uid)}"
            what = f"instance {instance.sop_instance_uid}"
        folder = str(instance_path(instance.study_uid, instance.series_uid, "").parent)
        with self._lock:
            self.sent += 1
        with self.client.get(self.client.target(path), ACCEPT_DICOM) as response:
            if response.status == 404:
                self.landing.note(f"{self.client.where}: {what} not found (HTTP 404)")
                return
            if response.status != 200:
                raise status_error(self.client.where, response.status, f"the retrieve of {what}", _RETRIEVE_HINTS)
            parser = _parser(response, self.client, what)
            try:
                _receive(response, parser, self.client, self.landing, folder, what, self.cancel)
            except (MalformedResponse, ConnectionFailed) as exc:
                if not self.keep_going:
                    raise
                self.landing.note(str(exc))  # its instances stay missing; the others go on

    def close(self) -> None:
        self.client.close()

    def raise_first(self) -> None:
        if self.failures:
            raise self.failures[0]


# --- retrieves ------------------------------------------------------------------------------------

def list_study(node: DicomWebNode, study_uid: str, series_uids: Sequence[str] | None,
               each: Callable[[str, dict[str, Any], list[dict[str, Any]]], object], *,
               timeout: float = 30, cancel: threading.Event | None = None,
               unlisted: Unlisted | None = None) -> None:
    """List a study series by series (QIDO-RS), handing over each series as soon as it is listed.

    The series are listed first (unless given), then the instances of each,
    :data:`LIST_PARALLEL` series at a time; ``each(series_uid, series_row, instance_rows)``
    is called (from a worker thread) as each series' listing arrives, so that its download
    can start while the next series are being listed. The instance rows carry
    :data:`RETRIEVE_FIELDS`. Once ``cancel`` is set, or a listing has failed, no other
    listing starts: ``unlisted(series_uid, series_row, failure, listing)`` is called instead
    for each series left (``failure`` the listing's error, or None when cancelled), and for a
    series whose own listing failed.

    A pause does not wait for the listings under way (an archive may take a third of a
    second for a series: Orthanc reads each instance's file): it returns at once, and each
    such series is handed to ``unlisted`` with ``listing``, a future of its instance rows
    once they come (or of the listing's error), for its job to take when it runs instead of
    asking again. Only the handing over of a listing that has arrived (``each``) is waited for.

    Raises
    ------
    CriteriaError
        No StudyInstanceUID.
    ConfigError, ConnectionFailed, AuthenticationFailed, QueryFailed, MalformedResponse
        As :func:`~dicomnb.sources.dicomweb.search` (the first failure, once the listings
        under way have ended; no other starts).
    """
    timeout = check_timeout(timeout)
    study = StudyListing(node, study_uid, timeout=timeout, fields=RETRIEVE_FIELDS)
    rows = {str(r["SeriesInstanceUID"]): r for r in study.series_rows() if r.get("SeriesInstanceUID")}
    series = list(dict.fromkeys(series_uids)) if series_uids is not None else list(rows)
    if not series:
        return
    failures: list[BaseException] = []
    changed = threading.Condition()
    listings = {uid: Future[list[dict[str, Any]]]() for uid in series}
    waiting: set[str] = set(series)  # not started yet
    asking: set[str] = set()         # their query out
    handing: set[str] = set()             # being handed to each() or unlisted() by a worker
    returned = False                      # paused: what is still out belongs to the jobs now

    def left(series_uid: str, failure: BaseException | None, listing: Future[Any] | None = None) -> None:
        if unlisted is not None:
            try:
                unlisted(series_uid, rows.get(series_uid, {}), failure, listing)
            except BaseException as exc:  # noqa: BLE001 - raised below, once the other listings end
                failures.append(exc)

    def handed(series_uid: str) -> None:
        with changed:
            handing.discard(series_uid)
            changed.notify_all()

    def arrived(series_uid: str) -> bool:
        """Its listing came back (or failed): True when this worker hands it over, False when
        the pause gave it to its job (which takes the rows, or the error, from its future)."""
        with changed:
            asking.discard(series_uid)
            if returned:
                return False
            handing.add(series_uid)
            return True

    def list_one(series_uid: str) -> None:
        with changed:
            if returned:
                return
            waiting.discard(series_uid)
            stop = bool(failures) or (cancel is not None and cancel.is_set())
            (handing if stop else asking).add(series_uid)
        if stop:
            left(series_uid, failures[0] if failures else None)
            handed(series_uid)
            return
        listing = listings[series_uid]
        try:
            instances = study.instances(series_uid)
        except BaseException as exc:  # noqa: BLE001 - raised below, once the other listings end
            listing.set_exception(exc)
            if arrived(series_uid):
                failures.append(exc)
                left(series_uid, exc)
                handed(series_uid)
            return
        listing.set_result(instances)
        if not arrived(series_uid):
            return
        try:
            each(series_uid, rows.get(series_uid, {}), instances)
        except BaseException as exc:  # noqa: BLE001 - raised below, once the other listings end
            failures.append(exc)
        finally:
            handed(series_uid)

    pool = ThreadPoolExecutor(min(LIST_PARALLEL, len(series)), thread_name_prefix="dicomnb-qido")
    runs = [pool.submit(list_one, uid) for uid in series]
    pool.shutdown(wait=False)
    while wait(runs, timeout=CANCEL_POLL if cancel is not None else None).not_done:
        if cancel is not None and cancel.is_set():
            with changed:
                returned = True
                out, never = sorted(asking), sorted(waiting)
                waiting.clear()
                changed.wait_for(lambda: not handing)  # a listing that arrived is handed over whole
            for uid in never:
                left(uid, None)
            for uid in out:
                left(uid, None, listings[uid])
            break
    if failures:
        raise failures[0]


def retrieve_wado_rs(node: DicomWebNode, landing: Landing, *, timeout: float = 30, parallel: int = 4,
                     per_instance: bool = False, cancel: threading.Event | None = None) -> bool:
    """Fetch what ``landing`` waits for from ``node``'s WADO-RS, ``parallel`` requests at a time.

    A series nothing of which is in the store yet is asked for whole (one request: Orthanc
    serves a series in one answer at 1.6× the pace of one request per instance); the other
    instances one by one, in the landing's order (``per_instance=True``: every instance on its
    own). Set ``cancel`` (from another thread) to stop between two instances: a series being
    received stops after its current part (the rest of the answer is left unread), no other
    request starts; it then returns True when instances stayed pending. Each part is streamed to a temporary file in the store and
    renamed into place once its header is read (memory stays bounded); what did not come
    stays in ``landing.missing``. A series or instance the server does not have (HTTP 404)
    is noted and left missing.

    Raises
    ------
    ConfigError, ConnectionFailed, AuthenticationFailed, QueryFailed
        As :func:`~dicomnb.sources.dicomweb.echo` (the first failure, once the requests
        under way have ended).
    MalformedResponse
        An answer that is not multipart DICOM, or is cut short (nothing half-written is kept).
    DownloadError
        The store cannot be written (full, or not writable).
    """
    timeout = check_timeout(timeout)
    _check_parallel(parallel)
    auth = _authorization(node)
    tasks: list[tuple[Expected, bool]] = []
    for series_uid, instances in landing.pending_by_series().items():
        tasks += _requests(instances, landing.series_complete_in_listing(series_uid), per_instance)
    stop = cancel if cancel is not None else threading.Event()
    if not tasks or stop.is_set():
        return bool(tasks)
    requests = _Requests(node, landing, timeout, auth, keep_going=False, cancel=stop)
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(min(parallel, len(tasks)), thread_name_prefix="dicomnb-wado-rs") as pool:
            for instance, whole in tasks:
                pool.submit(requests.guarded, requests.fetch, instance, whole)
    finally:
        requests.close()
    LOGGER.debug("WADO-RS %s: %d requests in %.3f s", requests.client.where, len(tasks), time.monotonic() - started)
    requests.raise_first()
    return stop.is_set() and bool(landing.missing)
