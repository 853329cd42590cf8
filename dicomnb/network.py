"""The network verbs a notebook user types: nodes, C-ECHO, search presets, C-FIND, retrieve.

>>> import dicomnb
>>> dicomnb.add_node("orthanc", aet="ORTHANC", host="127.0.0.1", port=4242)
>>> dicomnb.echo("orthanc")          # seconds
>>> dicomnb.presets().save("CT last week", dicomnb.SearchCriteria(modalities=("CT",), period="last-week"))
>>> result = dicomnb.query("orthanc", patient_name="Doe*", modalities=("CT",), limit=50)
>>> result.frame                     # one row per study
>>> dicomnb.query("orthanc", level="series", study_uid=result.rows[0]["StudyInstanceUID"])
>>> dicomnb.retrieve("orthanc", result.rows[0]["StudyInstanceUID"])          # C-GET into the catalog

Nodes and presets live in the configuration folder (``$DICOMNB_CONFIG_DIR`` or the user's
config dir); pynetdicom is imported only when a network call is made.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from dicomnb.core.criteria import SearchCriteria
from dicomnb.core.errors import ConfigError, CriteriaError, RetrieveIncomplete
from dicomnb.core.nodes import CallingNode, DicomNode, NodeStore
from dicomnb.core.presets import Presets
from dicomnb.core.query import FindOutcome, QueryResult, check_level, check_limit
from dicomnb.core.retrieval import Landing, RetrieveResult

__all__ = ["add_node", "echo", "find_instances", "nodes", "presets", "query", "remove_node", "retrieve"]


def _absolute(path: str | os.PathLike[str] | None) -> str | None:
    return os.path.abspath(os.fspath(path)) if path else None


def add_node(
    name: str,
    aet: str,
    host: str,
    port: int,
    *,
    wado_url: str | None = None,
    tls_ca: str | os.PathLike[str] | None = None,
    tls_cert: str | os.PathLike[str] | None = None,
    tls_key: str | os.PathLike[str] | None = None,
    replace: bool = False,
) -> DicomNode:
    """Add a DICOM node (an archive to query) to the saved nodes and return it.

    Parameters
    ----------
    name : str
        The name to call it by.
    aet, host, port
        Its called AE title and DICOM address.
    wado_url : str, optional
        Its WADO-URI base URL (``http://host:8042/wado``), for retrieval after C-FIND.
    tls_ca, tls_cert, tls_key : path, optional
        TLS: the server's CA (turns TLS on), our client certificate and key. Kept as
        absolute paths; their content is never copied into the configuration.
    replace : bool
        Replace a node of the same name instead of refusing.

    Raises
    ------
    ConfigError
        A value is not valid (the message says which), or the name is taken.
    """
    node = DicomNode(name=name, aet=aet, host=host, port=port, wado_url=wado_url,
                     tls_ca=_absolute(tls_ca), tls_cert=_absolute(tls_cert), tls_key=_absolute(tls_key))
    return NodeStore.load().add(node, replace=replace)


def nodes() -> list[DicomNode]:
    """The saved DICOM nodes, in the order they were added."""
    return list(NodeStore.load().nodes)


def remove_node(name: str) -> DicomNode:
    """Remove the saved node ``name`` and return it (ConfigError listing the known ones if unknown)."""
    return NodeStore.load().remove(name)


def echo(node: str | DicomNode, *, calling: CallingNode | None = None, timeout: float = 10) -> float:
    """C-ECHO a node (by name or as a :class:`DicomNode`); return the seconds it took.

    Raises
    ------
    ConfigError
        No saved node of that name.
    ConnectionFailed, AssociationRejected, AssociationAborted, QueryFailed
        The node did not answer; the message says what to check.
    DependencyMissing
        pynetdicom is not installed (``pip install 'dicomnb[network]'``).
    """
    from dicomnb.sources.dimse import echo as dimse_echo

    store = NodeStore.load()
    target = store.get(node) if isinstance(node, str) else node
    return dimse_echo(target, calling or store.calling, timeout=timeout)


def presets() -> Presets:
    """The saved search presets ("Empty" and "Today" built in), read afresh from disk."""
    return Presets.load()


def _target(store: NodeStore, node: str | DicomNode) -> DicomNode:
    return store.get(node) if isinstance(node, str) else node


def _criteria(level: str, criteria: SearchCriteria | None, preset: str | None,
              fields: dict[str, Any]) -> SearchCriteria:
    """The criteria a query runs with: given ones, a preset (plus changes), or the last preset."""
    if criteria is not None and preset is not None:
        raise CriteriaError("give either criteria or a preset, not both")
    if criteria is not None and not isinstance(criteria, SearchCriteria):
        raise CriteriaError(f"criteria must be SearchCriteria, not {type(criteria).__name__}")
    try:
        if preset is not None:
            base = Presets.load().choose(preset)
        elif criteria is not None:
            base = criteria
        elif not fields and level == "study":
            base = Presets.load().current()  # the preset chosen last applies again
        else:
            base = SearchCriteria()
        return base.replace(**fields) if fields else base
    except TypeError as exc:  # an unknown field name
        raise CriteriaError(f"unknown search field: {exc}: use the names of SearchCriteria "
                            "(patient_name, patient_id, modalities, period, date_from...)") from None


def query(
    node: str | DicomNode,
    criteria: SearchCriteria | None = None,
    *,
    level: str = "study",
    study_uid: str | None = None,
    series_uid: str | None = None,
    limit: int = 0,
    cancel: threading.Event | None = None,
    preset: str | None = None,
    calling: CallingNode | None = None,
    timeout: float = 30,
    now: datetime | None = None,
    **fields: Any,
) -> QueryResult:
    """Search an archive (C-FIND, Study Root) and return the matches.

    Parameters
    ----------
    node : str or DicomNode
        A saved node's name, or a node.
    criteria : SearchCriteria, optional
        What to search for. Or give its fields as keywords (``patient_name="Doe*"``,
        ``modalities=("CT",)``, ``period="last-week"``, ``date_from="2024-01-01"``...).
    level : {"study", "series", "image"}
        What to list: studies, the series of ``study_uid``, or the instances of
        ``study_uid`` (and ``series_uid``).
    study_uid, series_uid : str, optional
        The study (required below STUDY level) and series to look in.
    limit : int
        Stop after this many matches (0: no limit); ``result.limited`` then says the
        archive had more ("stopped after N studies").
    cancel : threading.Event, optional
        Set it from another thread to stop the query: it returns at once with what had
        arrived (``result.cancelled``). A new search or Clear in the dialog does this.
    preset : str, optional
        Start from this saved preset (it becomes the one chosen last); keywords change it.
        With no criteria, no preset and no keywords, the preset chosen last applies
        (at STUDY level).
    calling : CallingNode, optional
        Our AE title (default: the saved calling node).
    timeout : float
        Seconds allowed for connecting and between two answers.
    now : datetime, optional
        The time a named period is computed at (default: now).

    Returns
    -------
    QueryResult
        ``.rows`` (dicts of DICOM keyword → value), ``.frame``, ``.message``.

    Raises
    ------
    ConfigError
        No saved node or preset of that name.
    CriteriaError
        Criteria that cannot be sent (a bad date, no study UID below STUDY level).
    ConnectionFailed, AssociationRejected, AssociationAborted, QueryFailed
        The archive could not be asked or answered with a failure; the message says
        what to do.
    DependencyMissing
        pynetdicom is not installed (``pip install 'dicomnb[network]'``).
    """
    level = check_level(level)
    limit = check_limit(limit)
    store = NodeStore.load()
    target = _target(store, node)
    search = _criteria(level, criteria, preset, fields)
    from dicomnb.sources.dimse import find

    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    stream = find(target, search, level, study_uid=study_uid, series_uid=series_uid, limit=limit,
                  cancel=cancel, calling=calling or store.calling, timeout=timeout, now=now)
    while True:
        try:
            rows.append(next(stream))
        except StopIteration as stop:
            outcome: FindOutcome = stop.value
            break
    return QueryResult(rows=rows, level=level, node=target.name, limit=limit,
                       limited=outcome.limited, cancelled=outcome.cancelled,
                       seconds=time.monotonic() - started, notes=list(outcome.notes))


def find_instances(
    node: str | DicomNode,
    study_uid: str,
    series_uids: Sequence[str] | None = None,
    *,
    calling: CallingNode | None = None,
    timeout: float = 30,
) -> list[dict[str, Any]]:
    """The instances of a study (or of some of its series) on an archive: IMAGE-level rows.

    Each row has StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, SOPClassUID and
    what else the archive returns of :data:`dicomnb.core.query.IMAGE_COLUMNS`. The series
    are asked first, then each one's instances, as strict archives require.

    Raises
    ------
    ConfigError, CriteriaError, ConnectionFailed, AssociationRejected, AssociationAborted, QueryFailed
        As :func:`query`.
    """
    from dicomnb.sources.dimse import find_instances as dimse_find_instances

    store = NodeStore.load()
    return dimse_find_instances(_target(store, node), study_uid, series_uids,
                                calling=calling or store.calling, timeout=timeout)


#: Retrieve methods, and the source name their records carry in the catalog.
RETRIEVE_METHODS = {"c-get": "dimse", "c-move": "dimse", "wado-uri": "wado-uri"}


def retrieve(
    node: str | DicomNode,
    study_uid: str,
    series_uids: Sequence[str] | None = None,
    *,
    method: str = "c-get",
    dest: str | os.PathLike[str] | None = None,
    calling: CallingNode | None = None,
    timeout: float = 30,
    progress: Callable[[int, int], object] | None = None,
    parallel: int = 3,
    raise_incomplete: bool = True,
) -> RetrieveResult:
    """Retrieve a study (or some of its series) into the local store and the catalog.

    The instances are listed first (C-FIND at IMAGE level); those the store already holds
    complete are not fetched again; the others are fetched series by series (``parallel``
    at a time), each written atomically to the store as it arrives and filed into
    :data:`dicomnb.catalog` (source ``"dimse"`` or ``"wado-uri"``, origin the node's name).
    What arrived is then compared with what was listed.

    Parameters
    ----------
    node : str or DicomNode
        A saved node's name, or a node.
    study_uid : str
        The StudyInstanceUID.
    series_uids : sequence of str, optional
        Only these series of the study (default: all of them).
    method : {"c-get", "c-move", "wado-uri"}
        C-GET (one association, nothing to declare on the archive); C-MOVE (the archive
        must know our calling AE title and Storage SCP port, see ``calling``); WADO-URI
        (HTTP GET per instance at the node's ``wado_url``).
    dest : path, optional
        A folder that also gets a copy of every instance (hard-linked when it can be).
    calling : CallingNode, optional
        Our AE title, and for C-MOVE the address and port our Storage SCP listens on
        (default: the saved calling node, ``DICOMNB`` on 127.0.0.1:11113).
    timeout : float
        Seconds allowed for connecting and between two messages from the archive.
    progress : callable, optional
        Called as ``progress(done, total)`` after each instance lands (from worker threads).
    parallel : int
        Series retrieved at once, each on its own association or HTTP connection.
    raise_incomplete : bool
        Raise :class:`~dicomnb.errors.RetrieveIncomplete` when instances are missing
        (default); with False, return the result and let ``result.missing`` say so.

    Returns
    -------
    RetrieveResult
        ``.retrieved`` (fetched this time), ``.instances`` (records in the catalog),
        ``.missing``, ``.errors``, ``.seconds``, ``.to_json()``.

    Raises
    ------
    RetrieveIncomplete
        Instances listed by the C-FIND did not arrive; ``.missing`` lists their SOP Instance
        UIDs and ``.result`` is the :class:`RetrieveResult`. Retrieving again fetches just those.
    ConfigError
        No saved node of that name, an unknown method, no WADO-URI URL, a bad transfer
        syntax file, or (C-MOVE) a Storage SCP port that cannot be listened on.
    ConnectionFailed, AssociationRejected, AssociationAborted, QueryFailed
        The archive could not be reached, refused, aborted or answered with a failure
        (``QueryFailed.status``: 0xA701/0xA702 out of resources, 0xA801 unknown move
        destination, 0xC000 unable to process; None when it went silent).
    """
    if method not in RETRIEVE_METHODS:
        raise ConfigError(f"unknown retrieve method {method!r}: choose c-get, c-move or wado-uri")
    if not isinstance(study_uid, str) or not study_uid.strip():
        raise CriteriaError("a retrieve needs the StudyInstanceUID of the study")
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise ConfigError(f"parallel must be a whole number >= 1, not {parallel!r}")
    store = NodeStore.load()
    target = _target(store, node)
    calling = calling or store.calling
    if method == "wado-uri" and not target.wado_url:
        raise ConfigError(f"node {target.name!r} has no WADO-URI URL: add it with "
                          f"'dicomnb node add {target.name} ... --wado-url http://host:8042/wado --replace'")
    from dicomnb.api import catalog
    from dicomnb.sources.retrieve import list_instances, retrieve_dimse

    expected, sop_classes = list_instances(target, study_uid.strip(), series_uids, calling=calling,
                                           timeout=timeout)
    landing = Landing(expected, catalog.add_items,
                      source=RETRIEVE_METHODS[method], origin=target.name, dest=dest, progress=progress)
    landing.file_stored()
    if method == "wado-uri":
        from dicomnb.sources.wado_uri import retrieve_wado_uri

        retrieve_wado_uri(target, landing, timeout=timeout, parallel=parallel)
    else:
        retrieve_dimse(target, landing, method=method, sop_classes=sop_classes, calling=calling,
                       timeout=timeout, parallel=parallel)
    result = landing.result(target.name, study_uid.strip(), method)
    if result.missing and raise_incomplete:
        shown = ", ".join(result.missing[:3]) + (" ..." if len(result.missing) > 3 else "")
        error = RetrieveIncomplete(
            f"{len(result.missing)} of {result.expected} instances listed by {target.name} did not arrive "
            f"({shown}); {len(result.instances)} are in the catalog: retrieve again to fetch the missing "
            "ones" + (f" ({result.errors[0]})" if result.errors else ""),
            missing=result.missing, result=result)
        raise error
    return result
