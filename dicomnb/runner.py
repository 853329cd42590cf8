"""Run Weasis commands: ``dicomnb.run("$dicom:get -l /data $dicom:close -a")`` and ``weasis://`` URIs.

>>> results = dicomnb.run("weasis://?%24dicom%3Aget+-w+https%3A%2F%2Fpacs%2Fmanifest.xml")
>>> results[0].to_json()           # what `dicomnb get --json` prints for the same options

The text (or the URI, URL-decoded) is parsed whole first (:mod:`dicomnb.commands`): an unknown
command or option raises :class:`~dicomnb.errors.CommandError` naming what is supported, before
anything runs. Then each command runs in order:

- ``$dicom:get``: its sources in Weasis's order: ``-l`` local files and folders (recursive:
  :func:`dicomnb.import_local`), ``-r`` DICOM files by URL (a WADO-URI request...), each
  downloaded into the store (written atomically, named after its UIDs) and catalogued, ``-w``
  manifests (file or URL) and ``-i`` inline manifests, retrieved through the download manager
  (:func:`dicomnb.manifests.retrieve_manifest`), ``-z`` DICOM ZIPs (file or URL:
  :func:`dicomnb.import_zip`), and ``-p`` the portable folders beside the working directory
  (a ``DICOMDIR`` there, else ``dicom``, ``DICOM``, ``IMAGES``, ``images``);
- ``$dicom:rs``: QIDO-RS then WADO-RS through the download manager
  (:func:`dicomnb.manifests.retrieve_rs`);
- ``$dicom:close``: stops the downloads of what it names (running or paused, also a study still
  being listed: :func:`dicomnb.manifests.stop_downloads`), then removes it from the catalog;
- ``$image:get``: plain images (PNG, JPEG...) by file or URL, into ``catalog.images``;
- ``$weasis:config`` is skipped (launcher settings), and ``-?`` gives a command's usage.

As ``dicomnb get`` does, one source that fails (a manifest that cannot be read, an archive that
cannot be reached, a wrong ZIP password) does not stop the others: it is recorded as a typed
error in the command's result (``errors`` of its report, the exception in ``failures``), and the
next sources and commands run. ``strict=True`` raises it at once instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit

from dicomnb import api
from dicomnb.commands import (
    Command,
    CommandHelp,
    DicomClose,
    DicomGet,
    DicomRs,
    ImageGet,
    WeasisConfig,
    parse_commands,
    parse_uri,
    weasis_portable_folders,
)
from dicomnb.core.classify import classify_file
from dicomnb.core.errors import DicomnbError, InputError, PasswordError, RetrieveIncomplete
from dicomnb.core.manifest import Manifest, Message, parse_inline_manifest
from dicomnb.core.model import ErrorRecord, InstanceRecord, SkippedRecord
from dicomnb.core.report import ImportReport
from dicomnb.core.store import atomic_writer, cache_folder, instance_path, key_for, store_folder
from dicomnb.manifests import (
    ManifestResult,
    body_chunks,
    message_json,
    open_url,
    read_manifest,
    retrieve_manifest,
    shown_url,
    stop_downloads,
    studies_of_patient,
)
from dicomnb.rs import retrieve_rs

__all__ = ["CommandResult", "get_json", "local_path", "open_uri", "run", "run_command"]

LOGGER = logging.getLogger(__name__)

_ACCEPT_DICOM = "application/dicom, */*;q=0.5"
_ACCEPT_ZIP = "application/zip, application/octet-stream, */*;q=0.5"
_ACCEPT_IMAGE = "image/*, */*;q=0.5"


@dataclass
class CommandResult:
    """What one command did.

    Attributes
    ----------
    command : Command
        The command, as parsed.
    report : ImportReport
        What it brought into the catalog (``$dicom:get``, ``$dicom:rs``, ``$image:get``): the
        instances (imported or retrieved), images, and the typed errors of its sources.
    retrieved : int
        Instances fetched over the network this time (the others were in the store).
    not_retrieved : tuple of str
        SOP Instance UIDs a manifest or ``$dicom:rs`` asked for that did not arrive
        (``dicomnb.downloads.retry_missing()`` fetches them).
    messages : tuple of Message
        The manifests' messages (and "nothing found"), to show the user.
    cancelled : bool
        Stopped (``cancel`` set, or its downloads closed) before the end.
    jobs : list of str
        Its download jobs (``dicomnb.downloads``).
    closed : list of InstanceRecord
        ``$dicom:close``: the instances removed from the catalog.
    stopped : list of str
        ``$dicom:close``: the download jobs stopped and forgotten.
    failures : list of DicomnbError
        The sources (or the command) that failed as a whole, in order.
    usage : str
        ``-?``: the command's usage; ``$weasis:config``: why it was skipped.
    """

    command: Command
    report: ImportReport = field(default_factory=ImportReport)
    retrieved: int = 0
    not_retrieved: tuple[str, ...] = ()
    messages: tuple[Message, ...] = ()
    cancelled: bool = False
    jobs: list[str] = field(default_factory=list)
    closed: list[InstanceRecord] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    failures: list[DicomnbError] = field(default_factory=list, repr=False)
    usage: str = ""

    @property
    def name(self) -> str:
        """The command's name: ``"dicom:get"``, ``"dicom:close"``, ``"help"``..."""
        return self.command.name

    @property
    def ok(self) -> bool:
        """True when no source failed as a whole and nothing asked for is missing."""
        return not self.failures and not self.not_retrieved

    def add(self, retrieve: ManifestResult, source: str = "download", origin: str = "") -> None:
        """Add what a manifest or ``$dicom:rs`` brought (its notes as errors of ``source``)."""
        known = {r.SOPInstanceUID for r in self.report.instances}
        instances = [r for r in retrieve.instances if r.SOPInstanceUID not in known]
        self.report.merge(ImportReport(instances=instances, added=retrieve.retrieved,
                                       duplicates=len(retrieve.instances) - retrieve.retrieved,
                                       seconds=retrieve.seconds))
        self.retrieved += retrieve.retrieved
        self.not_retrieved += tuple(s for s in retrieve.missing if s not in self.not_retrieved)
        self.messages += retrieve.messages
        self.cancelled = self.cancelled or retrieve.cancelled
        self.jobs += retrieve.jobs
        failed = {str(f) for f in retrieve.failures}
        for error in retrieve.errors:
            if error not in failed:
                self.report.add_error(ErrorRecord(origin, "RetrieveIncomplete", error, source, origin))

    def fail(self, exc: DicomnbError, path: str, *, source: str, origin: str) -> None:
        """Record a source that failed as a whole."""
        self.failures.append(exc)
        self.report.add_error(ErrorRecord.from_exception(path, exc, source=source, origin=origin))

    def to_json(self) -> dict[str, Any]:
        """This command's result as JSON, with ``"command"`` its name.

        ``$dicom:get``, ``$dicom:rs`` and ``$image:get`` give the object ``dicomnb get --json``
        prints (:func:`get_json`); ``$dicom:close`` ``{"closed": {...}, "stopped": [...]}``.
        """
        data: dict[str, Any] = {"command": self.name}
        if isinstance(self.command, DicomClose):
            data["closed"] = {
                "instances": len(self.closed),
                "series": sorted({r.SeriesInstanceUID or "" for r in self.closed}),
                "studies": sorted({r.StudyInstanceUID or "" for r in self.closed}),
            }
            data["stopped"] = list(self.stopped)
        elif isinstance(self.command, (CommandHelp, WeasisConfig)):
            data["usage"] = self.usage
        else:
            data.update(get_json([self]))
        return data

    def summary(self) -> str:
        """What it did, for a terminal."""
        if isinstance(self.command, DicomClose):
            return (f"closed {len(self.closed)} instances; stopped {len(self.stopped)} download"
                    f"{'' if len(self.stopped) == 1 else 's'}")
        if isinstance(self.command, (CommandHelp, WeasisConfig)):
            return self.usage
        return _summary([self])

    def __repr__(self) -> str:
        first = self.summary().splitlines()[0] if self.summary() else ""
        return f"<CommandResult ${self.name}: {first}>"

    def _repr_html_(self) -> str:
        import html

        return f"<pre>${html.escape(self.name)}\n{html.escape(self.summary())}</pre>"


def get_json(results: Sequence[CommandResult]) -> dict[str, Any]:
    """The ``dicomnb get --json`` object over these results: the import report's keys
    (``counts``, ``stopped``, ``instances``, ``images``, ``attachments``, ``missing``, ``errors``)
    and ``retrieved``, ``not_retrieved``, ``cancelled``, ``messages``, ``jobs``."""
    report = ImportReport()
    for result in results:
        report.merge(result.report)
    data = report.to_json()
    data.update(
        retrieved=sum(r.retrieved for r in results),
        not_retrieved=[sop for r in results for sop in r.not_retrieved],
        cancelled=any(r.cancelled for r in results),
        messages=[message_json(m) for r in results for m in r.messages],
        jobs=[job for r in results for job in r.jobs],
    )
    return data


def _summary(results: Sequence[CommandResult]) -> str:
    report = ImportReport()
    for result in results:
        report.merge(result.report)
    lines = [report.summary()]
    retrieved = sum(r.retrieved for r in results)
    missing = [sop for r in results for sop in r.not_retrieved]
    if retrieved or missing:
        lines.append(f"{retrieved} instances retrieved" + (f", {len(missing)} did not arrive" if missing else ""))
    if any(r.cancelled for r in results):
        lines.append("stopped before the end: dicomnb.downloads.resume() finishes it")
    for message in (m for r in results for m in r.messages):
        lines.append(f"  message [{message.severity.value}] {message.title}: {message.description}")
    return "\n".join(lines)


# --- options ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Options:
    cwd: str
    password: str | bytes | None
    recursive: bool
    copy: bool
    progress: Callable[[int, int], object] | None
    cancel: threading.Event | None
    timeout: float
    strict: bool

    def stopped(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()


def _options(cwd: str | os.PathLike[str] | None = None, password: str | bytes | None = None,
             recursive: bool = True, copy: bool = False, progress: Callable[[int, int], object] | None = None,
             cancel: threading.Event | None = None, timeout: float = 30, strict: bool = False) -> _Options:
    return _Options(os.path.abspath(os.fspath(cwd)) if cwd is not None else os.getcwd(), password, recursive,
                    copy, progress, cancel, timeout, strict)


def run(text: str, *, cwd: str | os.PathLike[str] | None = None, password: str | bytes | None = None,
        recursive: bool = True, copy: bool = False, progress: Callable[[int, int], object] | None = None,
        cancel: threading.Event | None = None, timeout: float = 30, strict: bool = False) -> list[CommandResult]:
    """Run Weasis commands, or the commands of a ``weasis://`` URI, in order.

    Parameters
    ----------
    text : str
        ``$dicom:get -l /data $dicom:rs -u URL -r studyUID=1.2.3``, or ``weasis://?...``.
    cwd : path, optional
        Where ``$dicom:get -p`` looks for its portable folders (default: the working directory).
    password : str or bytes, optional
        For encrypted ZIPs (``-z``, and ZIPs met under ``-l``).
    recursive, copy : bool
        As for :func:`dicomnb.import_local` (``-l``).
    progress : callable, optional
        ``progress(done, total)`` over each manifest's or ``$dicom:rs``'s retrieve.
    cancel : threading.Event, optional
        Set it to stop: an import stops at its next file, a retrieve pauses its jobs
        (``dicomnb.downloads.resume()`` finishes them), no further source or command starts.
    timeout : float
        Seconds allowed for connecting and between two pieces of an answer.
    strict : bool
        Raise a source's failure at once (the commands before it have run), instead of
        recording it in the result and going on.

    Returns
    -------
    list of CommandResult
        One per command.

    Raises
    ------
    CommandError
        The text cannot be parsed (nothing has run): an unknown command or option...
    """
    return _run_all(parse_commands(text), _options(cwd, password, recursive, copy, progress, cancel, timeout,
                                                   strict))


def open_uri(uri: str, **options: Any) -> list[CommandResult]:
    """Run the commands of a ``weasis://`` URI (CommandError if it is not one); options as :func:`run`."""
    return _run_all(parse_uri(uri), _options(**options))


def run_command(command: Command, **options: Any) -> CommandResult:
    """Run one parsed command (:mod:`dicomnb.commands`); options as :func:`run`."""
    return _run_one(command, _options(**options))


def _run_all(commands: Sequence[Command], options: _Options) -> list[CommandResult]:
    results = []
    for command in commands:
        if options.stopped():
            break
        results.append(_run_one(command, options))
    return results


def _run_one(command: Command, options: _Options) -> CommandResult:
    result = CommandResult(command)
    if isinstance(command, DicomGet):
        _get(command, result, options)
    elif isinstance(command, DicomRs):
        _source(result, options, "dicomweb", command.url, partial(_retrieve_rs, command, options))
    elif isinstance(command, DicomClose):
        _close(command, result)
    elif isinstance(command, ImageGet):
        _image(command, result, options)
    elif isinstance(command, WeasisConfig):
        result.usage = "$weasis:config skipped: it configures the Weasis launcher, which dicomnb does not have"
        LOGGER.info(result.usage)
    else:
        result.usage = command.usage
    return result


def _source(result: CommandResult, options: _Options, kind: str, value: str, work: Callable[[], object],
            path: str | None = None) -> None:
    """Run one source of a command; its failure as a whole is recorded (or raised when strict)."""
    if options.stopped():
        result.report.stopped = True
        return
    try:
        outcome = work()
    except DicomnbError as exc:
        if isinstance(exc, RetrieveIncomplete) and isinstance(exc.result, ManifestResult):
            result.add(exc.result, kind, value)
            cause = exc.__cause__
            exc = cause if isinstance(cause, DicomnbError) else exc
        if options.strict:
            raise exc
        LOGGER.warning("%s %s: %s", kind, value, exc)
        source = "zip" if isinstance(exc, PasswordError) else kind
        result.fail(exc, path if path is not None else value, source=source, origin=value)
        return
    if isinstance(outcome, ImportReport):
        result.report.merge(outcome)
    elif isinstance(outcome, ManifestResult):
        result.add(outcome, kind, value)


# --- $dicom:get ------------------------------------------------------------------------------------------

def _is_url(value: str) -> bool:
    return urlsplit(value.strip()).scheme.lower() in {"http", "https"}


def local_path(value: str) -> str:
    """A ``file:`` URI as a path; a path as it is."""
    text = value.strip()
    if text.lower().startswith("file:"):
        parts = urlsplit(text)
        path = unquote(parts.path)
        if parts.netloc and parts.netloc != "localhost":
            path = f"//{parts.netloc}{path}"
        return path
    return os.path.expanduser(value)


def _existing(value: str) -> str:
    path = local_path(value)
    if not os.path.exists(path):
        raise InputError(f"no such file or folder: {path}")
    return path


def _get(command: DicomGet, result: CommandResult, options: _Options) -> None:
    """The sources of ``$dicom:get``, in the order Weasis starts them."""
    for value in command.local:
        _source(result, options, "local", value, partial(_local, value, options),
                path=os.path.abspath(local_path(value)))
    for value in command.remote:
        _source(result, options, "remote", value, partial(_remote, value, options))
    for value in command.wado:
        _source(result, options, "manifest", value, partial(_manifest, value, options))
    for value in command.zip:
        _source(result, options, "zip", value, partial(_zip, value, options),
                path=value if _is_url(value) else os.path.abspath(local_path(value)))
    for index, data in enumerate(command.iwado):
        _source(result, options, "manifest", f"-i #{index + 1}", partial(_inline, data, options))
    if command.portable:
        _source(result, options, "portable", options.cwd, partial(_portable, options))


def _local(value: str, options: _Options) -> ImportReport:
    return api.import_local(_existing(value), recursive=options.recursive, password=options.password,
                            copy=options.copy, cancel=options.cancel)


def _manifest(value: str, options: _Options) -> ManifestResult:
    manifest = read_manifest(value if _is_url(value) else local_path(value), timeout=options.timeout)
    return _retrieve(manifest, options)


def _inline(data: str, options: _Options) -> ManifestResult:
    return _retrieve(parse_inline_manifest(data), options)


def _retrieve(manifest: Manifest, options: _Options) -> ManifestResult:
    return retrieve_manifest(manifest, progress=options.progress, cancel=options.cancel, timeout=options.timeout,
                             raise_incomplete=False)


def _retrieve_rs(command: DicomRs, options: _Options) -> ManifestResult:
    return retrieve_rs(command, progress=options.progress, cancel=options.cancel, timeout=options.timeout,
                       raise_incomplete=False)


def _download(url: str, path: str | os.PathLike[str], *, accept: str, what: str, timeout: float,
              cancel: threading.Event | None) -> None:
    """Write the body at ``url`` to ``path`` atomically (complete, or not at all).

    Raises
    ------
    ConnectionFailed, QueryFailed, AuthenticationFailed
        As :func:`dicomnb.manifests.open_url` and :func:`~dicomnb.manifests.body_chunks`.
    InputError
        Stopped by ``cancel`` (nothing is kept).
    """
    with open_url(url, accept=accept, what=what, timeout=timeout) as response, atomic_writer(path) as f:
        for chunk in body_chunks(response, url, timeout=timeout):
            if cancel is not None and cancel.is_set():
                raise InputError(f"{shown_url(url)}: the download was stopped")
            f.write(chunk)


def _remote(url: str, options: _Options) -> ImportReport:
    """``-r URL``: one DICOM file, downloaded into the store under its UIDs' name and catalogued."""
    if not _is_url(url):
        raise InputError(f"-r takes an http(s) URL (a WADO-URI request, a DICOM file), not {url!r}: "
                         "give a local path with -l")
    store = store_folder()
    incoming = store / f".part-remote-{key_for('remote', url, threading.get_ident())}"
    report = ImportReport(sources=[f"remote:{shown_url(url)}"])
    _download(url, incoming, accept=_ACCEPT_DICOM, what="the request for the DICOM file", timeout=options.timeout,
              cancel=options.cancel)
    try:
        item = classify_file(str(incoming), "remote", url)
        if not isinstance(item, InstanceRecord):
            why = item.message if isinstance(item, ErrorRecord) else "it is not DICOM"
            raise InputError(f"{shown_url(url)} did not send a DICOM file: {why}")
        final = instance_path(item.StudyInstanceUID or "", item.SeriesInstanceUID or "", item.SOPInstanceUID)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(incoming, final)  # the same file system: complete under its final name, or absent
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(incoming)
    api.catalog.add_items([item.replace(path=str(final))], report)
    return report


def _fetched(url: str, folder: str, suffix: str, accept: str, options: _Options) -> str:
    """A file fetched by URL into the cache (``<cache>/<folder>/<key><suffix>``): its path."""
    path = cache_folder(folder) / f"{key_for(folder, url)}{suffix}"
    _download(url, path, accept=accept, what="the download", timeout=options.timeout, cancel=options.cancel)
    return str(path)


def _zip(value: str, options: _Options) -> ImportReport:
    path = _fetched(value, "remote", ".zip", _ACCEPT_ZIP, options) if _is_url(value) else _existing(value)
    return api.import_zip(path, password=options.password, copy=options.copy, cancel=options.cancel)


def _portable(options: _Options) -> ImportReport:
    """``-p``: the DICOMDIR beside the working directory when it lists something, else its folders."""
    found = weasis_portable_folders(options.cwd)
    if not found:
        raise InputError(f"no DICOMDIR and no folder named dicom, DICOM, IMAGES or images in {options.cwd}")
    if found.dicomdir is not None:
        report = api.import_dicomdir(found.dicomdir, copy=options.copy, cancel=options.cancel)
        if report.instances or report.missing or not found.folders:
            return report
        LOGGER.info("%s lists no series: reading the portable folders instead", found.dicomdir)
    return api.import_local(list(found.folders), recursive=True, password=options.password, copy=options.copy,
                            cancel=options.cancel)


# --- $dicom:close ----------------------------------------------------------------------------------------

def _close(command: DicomClose, result: CommandResult) -> None:
    studies = set(command.study)
    patients = set(command.patient)
    if patients:
        studies |= {r.StudyInstanceUID for r in api.catalog.records()
                    if r.PatientID in patients and r.StudyInstanceUID}
        for patient in patients:
            studies |= studies_of_patient(patient)
    # the downloads first: nothing lands in the catalog once it is closed
    result.stopped = stop_downloads(studies=studies, series=command.series, everything=command.all)
    result.closed = api.catalog.remove(patients=patients, studies=studies, series=command.series,
                                       everything=command.all)


# --- $image:get ------------------------------------------------------------------------------------------

def _image(command: ImageGet, result: CommandResult, options: _Options) -> None:
    for value in command.file:
        _source(result, options, "image", value, partial(_image_file, value, value),
                path=os.path.abspath(local_path(value)))
    for url in command.url:
        _source(result, options, "image", url, partial(_image_url, url, options))


def _image_file(value: str, origin: str) -> ImportReport:
    path = _existing(value)
    if os.path.isdir(path):
        raise InputError(f"{path} is a folder: $image:get -f takes an image file (use $dicom:get -l for folders)")
    item = classify_file(os.path.abspath(path), "image", origin)
    if isinstance(item, SkippedRecord):
        raise InputError(f"{path} is not an image dicomnb reads (PNG, JPEG, TIFF, BMP, GIF) nor DICOM")
    report = ImportReport(sources=[f"image:{origin}"])
    api.catalog.add_items([item], report)
    return report


def _image_url(url: str, options: _Options) -> ImportReport:
    if not _is_url(url):
        raise InputError(f"$image:get -u takes an http(s) URL, not {url!r}: give a file with -f")
    suffix = os.path.splitext(urlsplit(url).path)[1].lower()
    path = _fetched(url, "images", suffix if suffix.isascii() and 1 < len(suffix) <= 6 else "", _ACCEPT_IMAGE,
                    options)
    return _image_file(path, url)
