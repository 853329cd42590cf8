"""Retrieve over WADO-URI (PS3.18 chapter 9): one HTTP GET per instance.

After the C-FIND at IMAGE level has listed the instances, each one is asked for at the
node's ``wado_url``::

    GET /wado?requestType=WADO&studyUID=...&seriesUID=...&objectUID=...&contentType=application/dicom

with the ``/`` of the content type written literally: Orthanc 1.10 does not percent-decode
query strings and answers ``application%2Fdicom`` with HTTP 400. UIDs need no escaping
(digits and dots). :class:`~dicomnb.sources.http.HttpClient` keeps one connection alive per
worker thread (``parallel`` of them) and types the failures.

A 404 leaves the instance missing (the caller reports it); other failures become
:class:`~dicomnb.core.errors.ConnectionFailed` (refused, unreachable, TLS, silence) or
:class:`~dicomnb.core.errors.QueryFailed` with the HTTP status in ``status``.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from dicomnb.core.errors import ConfigError
from dicomnb.core.nodes import DicomNode
from dicomnb.core.retrieval import Expected, Landing
from dicomnb.sources.http import HttpClient, status_error

__all__ = ["retrieve_wado_uri", "wado_uri"]

LOGGER = logging.getLogger(__name__)

_HINTS = {
    400: "the server refuses the request: is this a WADO-URI URL (Orthanc: http://host:8042/wado)?",
    401: "the server wants credentials, which dicomnb does not send to WADO-URI",
    403: "the server refuses us: ask its administrator",
    405: "the server does not take GET here: is this a WADO-URI URL?",
}


def wado_uri(base: str, instance: Expected) -> str:
    """The WADO-URI request URL of one instance (``contentType=application/dicom``, literally)."""
    separator = "&" if "?" in base else "?"
    return (f"{base}{separator}requestType=WADO&studyUID={instance.study_uid}&seriesUID="
            f"{instance.series_uid}&objectUID={instance.sop_instance_uid}&contentType=application/dicom")


def retrieve_wado_uri(node: DicomNode, landing: Landing, *, timeout: float = 30, parallel: int = 4,
                      cancel: threading.Event | None = None) -> bool:
    """Fetch what ``landing`` waits for from ``node.wado_url``, ``parallel`` requests at a time.

    Instances are asked for in the landing's order (a download puts a series' first, last
    and middle instances first). Set ``cancel`` (from another thread) to stop between two
    instances: the requests under way finish and land, no other starts.

    Returns
    -------
    bool
        True when it was cancelled with instances still pending.

    Raises
    ------
    ConfigError
        The node has no WADO-URI URL.
    ConnectionFailed
        The server cannot be reached, refuses TLS, or is silent for ``timeout``.
    QueryFailed
        The server answers with an HTTP error other than 404 (``status`` holds it).
    """
    if not node.wado_url:
        raise ConfigError(f"node {node.name!r} has no WADO-URI URL (--wado-url http://host:8042/wado)")
    pending = [e for series in landing.pending_by_series().values() for e in series]
    stop = cancel if cancel is not None else threading.Event()
    if not pending or stop.is_set():
        return bool(pending)
    where = f"{node.name} ({node.wado_url})"
    client = HttpClient(node.wado_url, where=where, timeout=timeout)
    base_target = client.target("") or "/"
    failed = threading.Event()

    def fetch(instance: Expected) -> None:
        if failed.is_set() or stop.is_set():
            return
        try:
            get(instance)
        except BaseException:
            failed.set()
            raise

    def get(instance: Expected) -> None:
        with client.get(wado_uri(base_target, instance), "application/dicom") as response:
            body = client.read(response)
        if response.status == 404:
            LOGGER.info("%s: instance %s not found (HTTP 404)", where, instance.sop_instance_uid)
            landing.note(f"{where}: instance {instance.sop_instance_uid} not found (HTTP 404)")
            return
        if response.status != 200:
            raise status_error(where, response.status, f"the request for instance {instance.sop_instance_uid}",
                               _HINTS)
        landing.land(instance.sop_instance_uid, body, sender=where)

    try:
        with ThreadPoolExecutor(max(1, min(parallel, len(pending))), thread_name_prefix="dicomnb-wado") as pool:
            futures = [pool.submit(fetch, instance) for instance in pending]
            errors = [error for error in (future.exception() for future in futures) if error is not None]
    finally:
        client.close()
    if errors:
        raise errors[0]
    return stop.is_set() and bool(landing.missing)
