"""The network verbs a notebook user types: nodes, C-ECHO, search presets, C-FIND (retrieve: :mod:`dicomnb.retrieving`).

>>> import dicomnb
>>> dicomnb.add_node("orthanc", aet="ORTHANC", host="127.0.0.1", port=4242)
>>> dicomnb.echo("orthanc")          # seconds
>>> dicomnb.presets().save("CT last week", dicomnb.SearchCriteria(modalities=("CT",), period="last-week"))
>>> result = dicomnb.query("orthanc", patient_name="Doe*", modalities=("CT",), limit=50)
>>> result.frame                     # one row per study
>>> dicomnb.query("orthanc", level="series", study_uid=result.rows[0]["StudyInstanceUID"])
>>> dicomnb.retrieve("orthanc", result.rows[0]["StudyInstanceUID"])          # C-GET into the catalog
>>> dicomnb.add_node("web", dicomweb="http://127.0.0.1:8042/dicom-web", auth="basic", user="alice",
...                  secret_env="WEB_PASSWORD")                                # a DICOMweb node
>>> dicomnb.query("web", patient_name="Doe*", limit=10, page=2)              # QIDO-RS, second page
>>> dicomnb.retrieve("web", study_uid)                                       # WADO-RS

Nodes and presets live in the configuration folder (``$DICOMNB_CONFIG_DIR`` or the user's
config dir); pynetdicom is imported only when a network call is made.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from dicomnb.core.criteria import SearchCriteria
from dicomnb.core.errors import ConfigError, CriteriaError
from dicomnb.core.nodes import AnyNode, CallingNode, DicomNode, DicomWebNode, NodeStore
from dicomnb.core.presets import Presets
from dicomnb.core.query import FindOutcome, QueryResult, check_level, check_limit, check_page
from dicomnb.core.secrets import forget_secret, set_secret

__all__ = ["add_node", "echo", "find_instances", "forget_secret", "get_node", "nodes", "presets", "query",
           "remove_node", "set_secret"]


def _absolute(path: str | os.PathLike[str] | None) -> str | None:
    return os.path.abspath(os.fspath(path)) if path else None


def add_node(
    name: str,
    aet: str | None = None,
    host: str | None = None,
    port: int | None = None,
    *,
    wado_url: str | None = None,
    tls_ca: str | os.PathLike[str] | None = None,
    tls_cert: str | os.PathLike[str] | None = None,
    tls_key: str | os.PathLike[str] | None = None,
    dicomweb: str | None = None,
    qido_url: str | None = None,
    wado_rs_url: str | None = None,
    headers: dict[str, str] | None = None,
    auth: str = "none",
    user: str | None = None,
    secret_env: str | None = None,
    replace: bool = False,
) -> AnyNode:
    """Add a node (an archive to query) to the saved nodes and return it.

    A DIMSE node is given by ``aet``, ``host`` and ``port``; a DICOMweb node by its URL
    (``dicomweb=``). The configuration never holds a password or token: a DICOMweb secret
    is read from the environment variable ``secret_env`` or asked for once per process
    (:func:`set_secret`).

    Parameters
    ----------
    name : str
        The name to call it by.
    aet, host, port
        Its called AE title and DICOM address (DIMSE).
    wado_url : str, optional
        Its WADO-URI base URL (``http://host:8042/wado``), for retrieval after C-FIND (DIMSE).
    tls_ca, tls_cert, tls_key : path, optional
        TLS: the server's CA (turns TLS on), our client certificate and key. Kept as
        absolute paths; their content is never copied into the configuration.
    dicomweb : str, optional
        The DICOMweb base URL (``http://host:8042/dicom-web``): makes a DICOMweb node.
    qido_url, wado_rs_url : str, optional
        QIDO-RS and WADO-RS prefixes, when they differ from ``dicomweb``.
    headers : dict of str, optional
        Extra HTTP headers sent with every request (not ``Authorization``: use ``auth``).
    auth : {"none", "basic", "bearer"}
        How the DICOMweb service authenticates us.
    user : str, optional
        The user name of basic authentication.
    secret_env : str, optional
        The environment variable holding the password or token.
    replace : bool
        Replace a node of the same name instead of refusing.

    Raises
    ------
    ConfigError
        A value is not valid (the message says which), or the name is taken.
    """
    node: AnyNode
    if dicomweb is not None:
        extra = [k for k, v in (("aet", aet), ("host", host), ("port", port), ("wado_url", wado_url),
                                ("tls_ca", tls_ca), ("tls_cert", tls_cert), ("tls_key", tls_key)) if v]
        if extra:
            raise ConfigError(f"{', '.join(extra)} belong to DIMSE nodes, not to the DICOMweb node {name!r} "
                              "(its https URL turns TLS on)")
        node = DicomWebNode(name=name, url=dicomweb, qido_url=qido_url, wado_url=wado_rs_url,
                            headers=tuple((headers or {}).items()), auth=auth, user=user,
                            secret_env=secret_env)
    else:
        web = [k for k, v in (("qido_url", qido_url), ("wado_rs_url", wado_rs_url), ("headers", headers),
                              ("user", user), ("secret_env", secret_env)) if v] + (["auth"] if auth != "none" else [])
        if web:
            raise ConfigError(f"{', '.join(web)} belong to DICOMweb nodes: give its URL with dicomweb=")
        if aet is None or host is None or port is None:
            raise ConfigError(f"node {name!r} needs an AE title, a host and a port (or dicomweb=URL)")
        node = DicomNode(name=name, aet=aet, host=host, port=port, wado_url=wado_url,
                         tls_ca=_absolute(tls_ca), tls_cert=_absolute(tls_cert), tls_key=_absolute(tls_key))
    return NodeStore.load().add(node, replace=replace)


def nodes() -> list[AnyNode]:
    """The saved nodes (DIMSE and DICOMweb), in the order they were added."""
    return list(NodeStore.load().nodes)


def get_node(name: str) -> AnyNode:
    """The saved node called ``name`` (ConfigError listing the known ones if unknown)."""
    return NodeStore.load().get(name)


def remove_node(name: str) -> AnyNode:
    """Remove the saved node ``name`` and return it (ConfigError listing the known ones if unknown)."""
    return NodeStore.load().remove(name)


def echo(node: str | AnyNode, *, calling: CallingNode | None = None, timeout: float = 10) -> float:
    """Check that a node answers; return the seconds it took.

    A DIMSE node gets a C-ECHO; a DICOMweb node a cheap QIDO-RS search (one study).

    Raises
    ------
    ConfigError
        No saved node of that name, or a DICOMweb secret that is nowhere to be found.
    ConnectionFailed, AssociationRejected, AssociationAborted, QueryFailed, AuthenticationFailed
        The node did not answer, or refused us; the message says what to check.
    DependencyMissing
        pynetdicom is not installed (``pip install 'dicomnb[network]'``).
    """
    store = NodeStore.load()
    target = _target(store, node)
    if isinstance(target, DicomWebNode):
        from dicomnb.sources.dicomweb import echo as web_echo

        return web_echo(target, timeout=timeout)
    from dicomnb.sources.dimse import echo as dimse_echo

    return dimse_echo(target, calling or store.calling, timeout=timeout)


def presets() -> Presets:
    """The saved search presets ("Empty" and "Today" built in), read afresh from disk."""
    return Presets.load()


def _target(store: NodeStore, node: str | AnyNode) -> AnyNode:
    if isinstance(node, str):
        return store.get(node)
    if not isinstance(node, (DicomNode, DicomWebNode)):
        raise ConfigError(f"a node is a saved node's name or a node, not {type(node).__name__}")
    return node


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
    node: str | AnyNode,
    criteria: SearchCriteria | None = None,
    *,
    level: str = "study",
    study_uid: str | None = None,
    series_uid: str | None = None,
    limit: int = 0,
    page: int = 1,
    cancel: threading.Event | None = None,
    preset: str | None = None,
    calling: CallingNode | None = None,
    timeout: float = 30,
    now: datetime | None = None,
    **fields: Any,
) -> QueryResult:
    """Search an archive (C-FIND, Study Root; or QIDO-RS) and return the matches.

    Parameters
    ----------
    node : str, DicomNode or DicomWebNode
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
        archive had more ("stopped after N studies"). It is also the page size.
    page : int
        Which page of ``limit`` matches (1-based). QIDO-RS sends ``offset = (page - 1) ×
        limit``; C-FIND has no offset, so over DIMSE the first ``(page - 1) × limit``
        matches are received and skipped. ``result.limited`` says a next page may exist.
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
    ConnectionFailed, AssociationRejected, AssociationAborted, QueryFailed, AuthenticationFailed
        The archive could not be asked or answered with a failure; the message says
        what to do.
    DependencyMissing
        pynetdicom is not installed (``pip install 'dicomnb[network]'``).
    """
    level = check_level(level)
    limit = check_limit(limit)
    page = check_page(page, limit)
    store = NodeStore.load()
    target = _target(store, node)
    search = _criteria(level, criteria, preset, fields)
    skip = (page - 1) * limit
    started = time.monotonic()
    if isinstance(target, DicomWebNode):
        from dicomnb.sources.dicomweb import search as web_search

        stream = web_search(target, search, level, study_uid=study_uid, series_uid=series_uid, limit=limit,
                            offset=skip, cancel=cancel, timeout=timeout, now=now)
        skip = 0  # the server skipped them
    else:
        from dicomnb.sources.dimse import find

        stream = find(target, search, level, study_uid=study_uid, series_uid=series_uid,
                      limit=limit + skip if limit else 0, cancel=cancel, calling=calling or store.calling,
                      timeout=timeout, now=now)
    rows: list[dict[str, Any]] = []
    seen = 0
    while True:
        try:
            row = next(stream)
        except StopIteration as stop:
            outcome: FindOutcome = stop.value
            break
        seen += 1
        if seen > skip:
            rows.append(row)
    return QueryResult(rows=rows, level=level, node=target.name, limit=limit, page=page,
                       limited=outcome.limited, cancelled=outcome.cancelled,
                       seconds=time.monotonic() - started, notes=list(outcome.notes))


def find_instances(
    node: str | AnyNode,
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
    store = NodeStore.load()
    target = _target(store, node)
    if isinstance(target, DicomWebNode):
        from dicomnb.sources.dicomweb import find_instances as web_find_instances

        return web_find_instances(target, study_uid, series_uids, timeout=timeout)
    from dicomnb.sources.dimse import find_instances as dimse_find_instances

    return dimse_find_instances(target, study_uid, series_uids, calling=calling or store.calling,
                                timeout=timeout)
