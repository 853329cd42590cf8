"""DICOMweb: search with QIDO-RS (PS3.18 10.6); the WADO-RS retrieve is in :mod:`dicomnb.sources.wado_rs`.

Search (:func:`search`, :func:`find_instances`, :func:`echo`) asks the node's QIDO-RS prefix
for studies, the series of a study, or its instances, with the same criteria as C-FIND:
the identifier comes from :func:`~dicomnb.core.query.find_identifier`, so both protocols
give fields, periods and wildcards one meaning, and :func:`qido_query` only writes it as
query parameters (matching keys as ``keyword=value``, the table's columns as
``includefield``). Rows look like C-FIND rows (keyword → value, lists for
ModalitiesInStudy, ``Family^Given`` names, counts as int). Pages: ``limit`` rows from
``offset`` (page N is ``offset = (N - 1) × limit``); ``limit=0`` reads page after page
until a short one. A ``threading.Event`` cancels a search between pages and while reading.

:class:`StudyListing` lists a study's series and the instances of each, for
:func:`find_instances` and for the retrieve (WADO-RS), which lives in
:mod:`dicomnb.sources.wado_rs`.

How query values are written, and why (measured on Orthanc 1.10.1 with DICOMweb 1.7)
---------------------------------------------------------------------------------------
Orthanc 1.10 does not percent-decode query strings: ``PatientName=Doe%2A`` looks for the
text ``Doe%2A`` and matches nothing (this is what dicomweb-client sends), ``%5E`` for ``^``
likewise, and even ``PatientID=1CT%31`` does not find ``1CT1``. Its web server (CivetWeb)
answers HTTP 400 to a request line holding raw non-ASCII bytes, so neither way of writing
``Люкceмбypг`` in a URL reaches its database, although the database itself matches UTF-8
names (its REST ``/tools/find`` does). And its ``?`` never matches a non-ASCII character
(``Buc^J?r?me`` does not find ``Buc^Jérôme``), while ``*`` spans them.

So values are written without any percent-encoding, which is standard where it matters:

- ``*``, ``^`` and the other characters a URL query may hold are written as they are
  (``^`` is outside RFC 3986 but inside the WHATWG URL standard's query set, which
  browsers and curl send unencoded; every server tried takes it);
- a character that would need encoding is replaced by a wildcard: an ASCII one (a space,
  ``&``, ``=``...) by ``?``, a run of non-ASCII characters by ``*``; and a ``?`` typed is
  sent as ``*``, since Orthanc's ``?`` cannot stand for ``é``. The server then returns a
  superset, and the rows are filtered here with the exact pattern, so the meaning is the
  one typed, on Orthanc 1.10 and on servers that decode alike;
- Orthanc writes the names of its answers in Latin-1 (and says ``ISO_IR 100`` in each
  row), dropping what Latin-1 cannot hold: ``Люкceмбypг`` comes back as ``ceyp``,
  ``김희중`` empty. Asking SpecificCharacterSet back (``includefield``) would make it write
  them in each study's own character set, but then any search whose answer holds a study
  in an ISO 2022 set (Japanese, Korean) fails whole with HTTP 400 ("Unknown encoding while
  creating DICOM from JSON"): it is not asked. Instead, when the value typed holds
  characters the character set a row declares cannot hold, the row's value is not
  trusted: if it could be the cut-down form of a match, the true value is read from the
  metadata of one instance of the study (WADO-RS), which Orthanc gets right, and put in
  the row. A row that declares no character set is trusted (DICOM JSON is UTF-8).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import string
import threading
import time
import warnings
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from dicomnb.core.criteria import SearchCriteria
from dicomnb.core.errors import (
    AuthenticationFailed,
    ConfigError,
    ConnectionFailed,
    CriteriaError,
    MalformedResponse,
    QueryFailed,
)
from dicomnb.core.nodes import DicomWebNode
from dicomnb.core.query import FindOutcome, check_level, check_limit, find_identifier
from dicomnb.core.secrets import authorization, secret_for
from dicomnb.sources import dicomjson
from dicomnb.sources.http import HttpClient, Response, aborted_on, check_timeout, quote_segment, status_error

__all__ = ["ACCEPT_JSON", "StudyListing", "echo", "find_instances", "qido_query", "search"]

LOGGER = logging.getLogger(__name__)

#: What QIDO-RS is asked for.
ACCEPT_JSON = "application/dicom+json"

#: Rows asked for at a time when every match is wanted (``limit=0``).
PAGE_SIZE = 500
#: Series whose instances are listed at the same time by :func:`find_instances`.
LIST_PARALLEL = 4
#: Studies whose searched value the server's answer cannot hold, read from metadata, per search at most.
MAX_LOOKUPS = 100

_SEARCH_HINTS = {
    400: "the server refuses this search: it may not support one of the criteria (try fewer)",
    404: "not found: is the node's URL the DICOMweb root (Orthanc: http://host:8042/dicom-web)?",
}
_UNIQUE_KEYS = {"study": "StudyInstanceUID", "series": "SeriesInstanceUID", "image": "SOPInstanceUID"}
_UID_KEYS = frozenset({"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"})
# Characters written as they are in a query value (see the module docstring).
_LITERAL = frozenset(string.ascii_letters + string.digits + "-._~!$'()*:@/?^")


def _where(node: DicomWebNode, url: str) -> str:
    return f"{node.name} ({url})"


def _client(node: DicomWebNode, url: str, timeout: float, auth: str | None) -> HttpClient:
    return HttpClient(url, where=_where(node, url), timeout=timeout, headers=node.headers, authorization=auth)


def _authorization(node: DicomWebNode) -> str | None:
    if not isinstance(node, DicomWebNode):
        raise ConfigError(f"a DICOMweb call needs a DicomWebNode, not {type(node).__name__}")
    return authorization(node, secret_for(node))


# --- echo ---------------------------------------------------------------------------------------

def echo(node: DicomWebNode, *, timeout: float = 10) -> float:
    """Check that ``node`` answers a search (QIDO-RS ``studies?limit=1``); return the seconds taken.

    Raises
    ------
    ConfigError
        The node needs a secret that is nowhere to be found (the message says how to give it).
    ConnectionFailed
        The server cannot be reached, refuses TLS, or is silent for ``timeout``.
    AuthenticationFailed
        HTTP 401/403: check the credentials.
    QueryFailed
        Another HTTP error (``status`` holds it).
    """
    auth = _authorization(node)
    client = _client(node, node.qido, check_timeout(timeout), auth)
    started = time.monotonic()
    try:
        with client.get(client.target("/studies", [("limit", "1")]), ACCEPT_JSON) as response:
            client.read(response)
            if response.status not in (200, 204):
                raise status_error(client.where, response.status, "a search", _SEARCH_HINTS)
    finally:
        client.close()
    elapsed = time.monotonic() - started
    LOGGER.debug("QIDO-RS echo %s: %.3f s", client.where, elapsed)
    return elapsed


# --- criteria → query parameters -----------------------------------------------------------------

def _query_value(value: str) -> tuple[str, bool]:
    """``value`` as written in a query, and whether characters had to become wildcards."""
    written: list[str] = []
    widened = False
    for char in value:
        if char == "?":
            written.append("*")  # Orthanc's ? never matches a non-ASCII character
            widened = True
        elif char in _LITERAL:
            written.append(char)
        elif ord(char) < 128:
            written.append("?")  # one ASCII character: Orthanc's ? matches it
            widened = True
        else:
            widened = True
            if not written or written[-1] != "*":
                written.append("*")  # Orthanc's ? never matches a non-ASCII character
    return re.sub(r"\*+", "*", "".join(written)), widened


def _uid_list(value: str) -> str:
    """UIDs (``\\``-separated as in C-FIND) as a QIDO uid-list (comma-separated)."""
    return ",".join(quote_segment(uid) for uid in value.split("\\") if uid.strip())


def qido_query(
    criteria: SearchCriteria | None = None,
    level: str = "study",
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    now: datetime | None = None,
) -> tuple[str, list[tuple[str, str]], dict[str, str]]:
    """The QIDO-RS request for a search: path (below the QIDO prefix), parameters, exact checks.

    The attributes are those of the C-FIND identifier
    (:func:`~dicomnb.core.query.find_identifier`): its matching keys become
    ``keyword=value`` parameters, its return keys ``includefield``. The study (and series)
    UIDs of SERIES and IMAGE searches go in the path.

    Returns
    -------
    path : str
        ``/studies``, ``/studies/{uid}/series``, ``/studies/{uid}/instances`` or
        ``/studies/{uid}/series/{uid}/instances``.
    params : list of (str, str)
        Query parameters, written as sent (see the module docstring: no percent-encoding).
    exact : dict of str
        Keyword → the value typed, for the values that had to be widened with wildcards:
        rows are checked against them.

    Raises
    ------
    CriteriaError
        As :func:`~dicomnb.core.query.find_identifier` (unknown level, no study UID below
        STUDY level).
    """
    level = check_level(level)
    identifier = find_identifier(criteria, level, study_uid=study_uid, series_uid=series_uid, now=now)
    if level == "study":
        path = "/studies"
    else:
        study = quote_segment(str(identifier.pop("StudyInstanceUID")))
        path = f"/studies/{study}/series"
        if level == "image":
            series = identifier.pop("SeriesInstanceUID", "")
            path = f"/studies/{study}/series/{quote_segment(series)}/instances" if series else \
                f"/studies/{study}/instances"
    params: list[tuple[str, str]] = []
    fields: list[str] = []
    exact: dict[str, str] = {}
    for keyword, value in identifier.items():
        if keyword == "QueryRetrieveLevel":
            continue
        if keyword == "SpecificCharacterSet":
            continue  # asking it back breaks Orthanc 1.10's search (see the module docstring)
        if value in ("", None, []):
            fields.append(keyword)
            continue
        if isinstance(value, (list, tuple)):  # ModalitiesInStudy: any of them (comma: QIDO's list)
            written = ",".join(_query_value(str(v))[0] for v in value)
        elif keyword in _UID_KEYS:
            written = _uid_list(str(value))
        else:
            written, widened = _query_value(str(value))
            if widened:
                exact[keyword] = str(value)
                if not written.strip("*"):  # nothing left but "*": ask it back, match it here
                    fields.append(keyword)
                    continue
        params.append((keyword, written))
    # Unique keys of the levels above are asked back too: rows carry them as C-FIND rows do.
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID") if level != "study" else ():
        if keyword not in fields and not any(name == keyword for name, _ in params):
            fields.append(keyword)
    params.extend(("includefield", keyword) for keyword in dict.fromkeys(fields))
    return path, params, exact


def _reader(response: Response, client: HttpClient) -> Callable[[int], bytes]:
    """``read1`` of an answer, its network failures typed."""
    def read(size: int) -> bytes:
        try:
            return response.raw.read1(size)
        except (OSError, ValueError) as exc:
            raise client.failure(exc) from exc
    return read


def _encodes(char: str, codec: str) -> bool:
    try:
        char.encode(codec)
    except (UnicodeError, LookupError):
        return False
    return True


def _wildcard(pattern: str, person_name: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    # PS3.4 C.2.2.2.1 lets person names match without regard to case.
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if person_name else 0))


class _ExactCheck:
    """The rows that match the values typed, where the query had to widen them.

    A row's value is not trusted when the character set the row declares cannot hold the
    value typed (Orthanc cuts names down to Latin-1): if the cut-down value could come from
    a match, the true one is read from the metadata of one instance of the study (see the
    module docstring); at most :data:`MAX_LOOKUPS` times per search.
    """

    def __init__(self, exact: dict[str, str], node: DicomWebNode, timeout: float, auth: str | None) -> None:
        from pydicom.datadict import dictionary_VR, tag_for_keyword

        self.exact = exact
        self.names: set[str] = set()
        for keyword in exact:
            tag = tag_for_keyword(keyword)
            if tag is not None and dictionary_VR(tag) == "PN":
                self.names.add(keyword)
        self.patterns = {k: _wildcard(v, k in self.names) for k, v in exact.items()}
        self.node, self.timeout, self.auth = node, timeout, auth
        self.looked_up = 0
        self.skipped = 0
        self._clients: dict[str, HttpClient] = {}

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def _matches(self, keyword: str, value: Any, pattern: re.Pattern[str] | None = None) -> bool:
        pattern = pattern or self.patterns[keyword]
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                candidates = [item, *item.split("=")] if keyword in self.names else [item]
                if any(pattern.fullmatch(c) for c in candidates):
                    return True
        return False

    @staticmethod
    @functools.lru_cache(maxsize=256)
    def _cut_down(typed: str, charsets: tuple[str, ...]) -> str | None:
        """``typed`` with what ``charsets`` cannot hold made ``*`` (None: it holds everything)."""
        from pydicom.charset import convert_encodings

        try:
            with warnings.catch_warnings():  # an unknown term: pydicom warns and falls back
                warnings.simplefilter("ignore")
                codecs_ = convert_encodings(list(charsets) or ["ISO_IR 6"])
        except (LookupError, ValueError):
            return None
        held = []
        for char in typed:
            held.append(char if any(_encodes(char, codec) for codec in codecs_) else "*")
        cut = re.sub(r"\*+", "*", "".join(held))
        return None if cut == typed else cut

    def accepts(self, row: dict[str, Any], charsets: list[str] | None) -> bool:
        lookup = False
        for keyword, typed in self.exact.items():
            value = row.get(keyword)
            if self._matches(keyword, value):
                continue
            cut = self._cut_down(typed, tuple(charsets)) if charsets else None
            if cut is None or not self._matches(keyword, value or "", _wildcard(cut, keyword in self.names)):
                return False  # a trusted value that does not match, or no match even cut down
            lookup = True
        if not lookup:
            return True
        if self.looked_up >= MAX_LOOKUPS or not isinstance(row.get("StudyInstanceUID"), str):
            self.skipped += 1
            return False
        self.looked_up += 1
        try:
            found = self._metadata(row["StudyInstanceUID"], list(self.exact))
        except (QueryFailed, MalformedResponse) as exc:
            if isinstance(exc, AuthenticationFailed):
                raise
            LOGGER.debug("metadata of study %s not read: %s", row["StudyInstanceUID"], exc)
            self.skipped += 1  # no way to tell: left out, and said so
            return False
        row.update({k: v for k, v in found.items() if v not in (None, "", [])})
        return all(self._matches(keyword, row.get(keyword)) for keyword in self.exact)

    def _get_json(self, url: str, path: str, params: Sequence[tuple[str, str]] = ()) -> Any:
        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = _client(self.node, url, self.timeout, self.auth)
        with client.get(client.target(path, params), ACCEPT_JSON) as response:
            body = client.read(response)
        if response.status not in (200, 204):
            raise status_error(client.where, response.status, "a metadata request", _SEARCH_HINTS)
        try:
            return json.loads(body) if body.strip() else []
        except ValueError as exc:
            raise MalformedResponse(f"{client.where}: a metadata answer is not JSON") from exc

    def _metadata(self, study_uid: str, keywords: list[str]) -> dict[str, Any]:
        study = quote_segment(study_uid)
        found = self._get_json(self.node.qido, f"/studies/{study}/instances",
                               [("limit", "1"), ("includefield", "SeriesInstanceUID")])
        rows = [dicomjson.row(d) for d in found if isinstance(d, dict)] if isinstance(found, list) else []
        if not rows or not rows[0].get("SeriesInstanceUID") or not rows[0].get("SOPInstanceUID"):
            return {}
        series, sop = quote_segment(str(rows[0]["SeriesInstanceUID"])), quote_segment(str(rows[0]["SOPInstanceUID"]))
        metadata = self._get_json(self.node.wado, f"/studies/{study}/series/{series}/instances/{sop}/metadata")
        if not isinstance(metadata, list) or not metadata or not isinstance(metadata[0], dict):
            return {}
        values = dicomjson.row(metadata[0])
        return {k: values.get(k) for k in keywords}

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


# --- search --------------------------------------------------------------------------------------

def search(
    node: DicomWebNode,
    criteria: SearchCriteria | None = None,
    level: str = "study",
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    limit: int = 0,
    offset: int = 0,
    cancel: threading.Event | None = None,
    timeout: float = 30,
    now: datetime | None = None,
) -> Generator[dict[str, Any], None, FindOutcome]:
    """Search ``node`` with QIDO-RS and yield one row per match as it arrives.

    Parameters
    ----------
    node : DicomWebNode
        The service to ask.
    criteria : SearchCriteria, optional
        What to look for (matched at STUDY level; below it only the modality is used).
    level : {"study", "series", "image"}
        Studies, the series of ``study_uid``, or its instances (of ``series_uid`` if given).
    study_uid, series_uid : str, optional
        The study (required below STUDY level) and the series (IMAGE level) to look in.
    limit : int
        The page size: at most this many rows (0: every match, read page after page).
    offset : int
        Matches to skip first: page N of ``limit`` rows is ``offset = (N - 1) * limit``.
    cancel : threading.Event, optional
        Set it (from another thread) to stop: the generator returns at once with what
        has arrived, also while it waits for the server.
    timeout : float
        Seconds allowed to connect and between two pieces of the answer.
    now : datetime, optional
        The time a named period is computed at (default: now).

    Yields
    ------
    dict
        DICOM keyword → value, as :func:`dicomnb.sources.dimse.find` yields.

    Returns
    -------
    FindOutcome
        ``limited``: the server has more matches after this page (ask for the next one);
        ``cancelled``; ``notes``.

    Raises
    ------
    CriteriaError
        Criteria that cannot be sent (no study UID below STUDY level, a negative limit).
    ConfigError
        The node needs a secret that is nowhere to be found (the message says how to give it).
    ConnectionFailed, AuthenticationFailed, QueryFailed, MalformedResponse
        The server could not be asked, refused us, failed, or answered something that is
        not a list of datasets.
    """
    level = check_level(level)
    limit = check_limit(limit)
    offset = check_limit(offset, "offset")
    if criteria is not None and not isinstance(criteria, SearchCriteria):
        raise CriteriaError(f"criteria must be SearchCriteria, not {type(criteria).__name__}")
    criteria = criteria or SearchCriteria()
    path, params, exact = qido_query(criteria, level, study_uid=study_uid, series_uid=series_uid, now=now)
    timeout = check_timeout(timeout)
    auth = _authorization(node)  # here, in the calling thread, once
    client = _client(node, node.qido, timeout, auth)
    check = _ExactCheck(exact if level == "study" else {}, node, timeout, auth)
    wanted = frozenset(criteria.modalities) if level in ("study", "series") else frozenset()
    filled = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid} if level != "study" else {}
    return _search(client, path, params, level, limit, offset, cancel, check, wanted, filled)


def _search(
    client: HttpClient, path: str, params: list[tuple[str, str]], level: str, limit: int, offset: int,
    cancel: threading.Event | None, check: _ExactCheck, wanted: frozenset[str], filled: dict[str, str | None],
) -> Generator[dict[str, Any], None, FindOutcome]:
    key = _UNIQUE_KEYS[level]
    seen: set[str] = set()
    matches = 0
    position = offset
    # One row more than the page is asked for: whether the server has more is then known,
    # not guessed from a full page. Without a limit, pages of PAGE_SIZE until a short one.
    page = limit + 1 if limit else PAGE_SIZE
    started = time.monotonic()
    cancelled = lambda: cancel is not None and cancel.is_set()  # noqa: E731
    try:
        with aborted_on(cancel, client):
            while True:
                if cancelled():
                    return _outcome(matches, check, cancelled=True)
                target = client.target(path, [*params, ("limit", str(page)), ("offset", str(position))])
                received = 0
                more = False
                try:
                    with client.get(target, ACCEPT_JSON) as response:
                        if response.status not in (200, 204):
                            raise status_error(client.where, response.status, "the search", _SEARCH_HINTS)
                        # PS3.18 8.3.4.4: a server that cuts the answer short says so in a Warning.
                        more = response.header("Warning").lstrip().startswith("299")
                        datasets = dicomjson.datasets(_reader(response, client), client.where) \
                            if response.status == 200 else iter(())
                        for dataset in datasets:
                            received += 1
                            if limit and received > limit:
                                break  # the extra row: only its existence counts
                            row = dicomjson.row(dataset)
                            for keyword, value in filled.items():
                                if value and not row.get(keyword):
                                    row[keyword] = value
                            unique = row.get(key)
                            if isinstance(unique, str) and unique:
                                if unique in seen:
                                    continue
                                seen.add(unique)
                            if not _modality_ok(row, wanted):
                                continue
                            if check and not check.accepts(row, dicomjson.charsets(dataset)):
                                continue
                            matches += 1
                            yield row
                            if cancelled():
                                return _outcome(matches, check, cancelled=True)
                except (ConnectionFailed, MalformedResponse):
                    if cancelled():  # the cancel broke the connection: not an error
                        return _outcome(matches, check, cancelled=True)
                    raise
                if limit:
                    return _outcome(matches, check, limited=received > limit or more)
                if (received < page and not more) or received > page or received == 0:
                    # a short page is the last; more rows than asked: the server ignores limits
                    LOGGER.debug("QIDO-RS %s%s: %d matches in %.3f s", client.where, path, matches,
                                 time.monotonic() - started)
                    return _outcome(matches, check)
                position += received
    finally:
        client.close()
        check.close()


def _modality_ok(row: dict[str, Any], wanted: frozenset[str]) -> bool:
    """Keep rows of one of the ``wanted`` modalities (as the C-FIND source does)."""
    if not wanted:
        return True
    if "Modality" in row and "ModalitiesInStudy" not in row:
        return row.get("Modality") in wanted
    modalities = row.get("ModalitiesInStudy")
    return not isinstance(modalities, list) or not modalities or bool(wanted & set(modalities))


def _outcome(matches: int, check: _ExactCheck, *, limited: bool = False, cancelled: bool = False) -> FindOutcome:
    notes: list[str] = []
    if check.looked_up:
        notes.append(f"the server's answer could not hold a searched value in {check.looked_up} "
                     f"{'study' if check.looked_up == 1 else 'studies'}: it was read from their "
                     "instances' metadata")
    if check.skipped:
        notes.append(f"{check.skipped} studies whose searched value the server's answer could not hold "
                     f"were left out (their metadata could not be read, or more than {MAX_LOOKUPS} to "
                     "read): narrow the search")
    return FindOutcome(matches, limited=limited and not cancelled, cancelled=cancelled, notes=tuple(notes))


class StudyListing:
    """The QIDO-RS listings of one study: its series, and the instances of each.

    Each listing is one request (a page of :data:`PAGE_SIZE` rows at a time) on a
    connection of its own, so that several series can be listed side by side from worker
    threads. The node's secret is read once, here, in the calling thread.

    Parameters
    ----------
    node : DicomWebNode
        The service to ask.
    study_uid : str
        The StudyInstanceUID.
    timeout : float
        Seconds allowed to connect and between two pieces of an answer.
    fields : sequence of str, optional
        The attributes asked back at IMAGE level: by default those of
        :data:`~dicomnb.core.query.IMAGE_COLUMNS`, as :func:`search` asks; a retrieve asks
        only what it needs (:data:`dicomnb.sources.wado_rs.RETRIEVE_FIELDS`).

    Raises
    ------
    CriteriaError
        No StudyInstanceUID.
    ConfigError
        The node needs a secret that is nowhere to be found (the message says how to give it).
    """

    def __init__(self, node: DicomWebNode, study_uid: str, *, timeout: float = 30,
                 fields: Sequence[str] | None = None) -> None:
        if not isinstance(study_uid, str) or not study_uid.strip():
            raise CriteriaError("listing the instances of a study needs its StudyInstanceUID")
        self.node, self.study_uid, self.fields = node, study_uid.strip(), fields
        self.timeout = check_timeout(timeout)
        self.auth = _authorization(node)
        self._no_check = _ExactCheck({}, node, self.timeout, self.auth)

    def _rows(self, level: str, series_uid: str | None) -> list[dict[str, Any]]:
        path, params, _ = qido_query(None, level, study_uid=self.study_uid, series_uid=series_uid)
        if level == "image" and self.fields is not None:
            params = [p for p in params if p[0] != "includefield"] + [("includefield", f) for f in self.fields]
        client = _client(self.node, self.node.qido, self.timeout, self.auth)
        return list(_search(client, path, params, level, 0, 0, None, self._no_check, frozenset(),
                            {"StudyInstanceUID": self.study_uid, "SeriesInstanceUID": series_uid}))

    def series_rows(self) -> list[dict[str, Any]]:
        """The SERIES-level rows of the study (Modality, SeriesNumber, SeriesDescription...).

        Raises
        ------
        ConnectionFailed, AuthenticationFailed, QueryFailed, MalformedResponse
            As :func:`search`.
        """
        return self._rows("series", None)

    def series(self) -> list[str]:
        """The SeriesInstanceUIDs of the study, in the server's order (errors as :meth:`series_rows`)."""
        return list(dict.fromkeys(str(r["SeriesInstanceUID"]) for r in self.series_rows()
                                  if r.get("SeriesInstanceUID")))

    def instances(self, series_uid: str) -> list[dict[str, Any]]:
        """The IMAGE-level rows of one series (StudyInstanceUID and SeriesInstanceUID filled in).

        Raises
        ------
        ConnectionFailed, AuthenticationFailed, QueryFailed, MalformedResponse
            As :func:`search`.
        """
        return self._rows("image", series_uid)


def find_instances(
    node: DicomWebNode,
    study_uid: str,
    series_uids: Sequence[str] | None = None,
    *,
    timeout: float = 30,
) -> list[dict[str, Any]]:
    """The instances (IMAGE-level rows) of a study, or of some of its series.

    Each row has StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, SOPClassUID and what
    else the server returns of :data:`~dicomnb.core.query.IMAGE_COLUMNS`, as
    :func:`dicomnb.sources.dimse.find_instances` gives. The study's series are listed first
    (unless ``series_uids`` are given), then the instances of each, :data:`LIST_PARALLEL`
    series at a time: Orthanc takes about 2 ms of CPU per instance listed (see
    :mod:`dicomnb.sources.wado_rs`), so listing series side by side is what keeps the
    listing of a big study short. Rows come series by series, in the order of the series.

    Raises
    ------
    CriteriaError, ConfigError, ConnectionFailed, AuthenticationFailed, QueryFailed, MalformedResponse
        As :func:`search`.
    """
    listing = StudyListing(node, study_uid, timeout=timeout)
    series = list(dict.fromkeys(series_uids)) if series_uids is not None else listing.series()
    if len(series) <= 1:
        return [row for uid in series for row in listing.instances(uid)]
    with ThreadPoolExecutor(min(LIST_PARALLEL, len(series)), thread_name_prefix="dicomnb-qido") as pool:
        return [row for rows in pool.map(listing.instances, series) for row in rows]
