"""``$dicom:rs``: find what a DICOMweb request names with QIDO-RS, retrieve it with WADO-RS.

>>> (command,) = dicomnb.commands.parse_commands("$dicom:rs -u http://pacs/dicom-web -r studyUID=1.2.3")
>>> dicomnb.rs.retrieve_rs(command)          # one download job per series, as dicomnb.retrieve

Each ``-r`` is one request (Weasis's ``RsQueryParams``, the IHE Invoke Image Display keys):

- ``objectUID=`` finds those instances (``/instances?SOPInstanceUID=``, within ``studyUID`` and
  ``seriesUID`` when given): each series' job fetches just them;
- else ``seriesUID=`` finds those series (``/series?SeriesInstanceUID=``; no search when one
  ``studyUID`` is given): each is listed and retrieved;
- else the studies matching ``studyUID``, ``patientID``, ``accessionNumber`` (each value of the
  last two searched in turn), ``patientName``, ``modalitiesInStudy``, ``lowerDateTime`` /
  ``upperDateTime`` (their dates), keeping the ``mostRecentResults`` latest: each retrieved whole.

The QIDO-RS requests carry ``-H`` and ``--query-header`` (and ``--query-ext`` in their query), the
WADO-RS ones ``-H`` and ``--retrieve-header`` (and ``--retrieve-ext``): two nodes of the same
name, kept in memory only (:mod:`dicomnb.manifests`). A request that finds nothing gives a
"Nothing found" message.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from dicomnb.commands import DicomRs, RsRequest
from dicomnb.core.criteria import SearchCriteria
from dicomnb.core.downloads import Batch
from dicomnb.core.manifest import Instance, Series
from dicomnb.core.nodes import DicomWebNode
from dicomnb.manifests import ManifestResult, _Run, _web_node, search_studies, shown_url
from dicomnb.sources.http import HttpClient, quote_segment, status_error

__all__ = ["retrieve_rs"]

LOGGER = logging.getLogger(__name__)

_ACCEPT_JSON = "application/dicom+json"
#: What an instance search asks back: where each instance belongs, and its order.
_INSTANCE_FIELDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber",
                    "PatientID")


def retrieve_rs(
    command: DicomRs,
    *,
    progress: Callable[[int, int], object] | None = None,
    cancel: threading.Event | None = None,
    dest: str | os.PathLike[str] | None = None,
    timeout: float = 30,
    raise_incomplete: bool = True,
) -> ManifestResult:
    """Run ``$dicom:rs``: find what each ``-r`` names (QIDO-RS), retrieve it (WADO-RS) as download jobs.

    ``progress``, ``cancel``, ``dest``, ``timeout`` and ``raise_incomplete``, the result and the
    errors are those of :func:`dicomnb.manifests.retrieve_manifest`.
    """
    if command.accept_ext.strip() not in {"", "transfer-syntax=*"}:
        LOGGER.info("$dicom:rs --accept-ext %r: dicomnb always asks for the files as stored "
                    "(transfer-syntax=*)", command.accept_ext)
    if command.show_whole_study:
        LOGGER.info("$dicom:rs --show-whole-study: only what is asked for is retrieved")
    query = _web_node("rs", "", command.url, command.qido_headers(), command.query_ext)
    transfer = _web_node("rs", "", command.url, command.wado_headers(), command.retrieve_ext)
    run = _Run(progress, cancel, dest, timeout)
    batch = Batch(run.progress.part("rs"))

    def plan(run: _Run) -> None:
        for request in command.requests:
            run.submit(functools.partial(_request, run, query, transfer, batch, request))

    return run.run([plan], (), raise_incomplete)


def _request(run: _Run, query: DicomWebNode, transfer: DicomWebNode, batch: Batch, request: RsRequest) -> None:
    """One ``-r``: what it names found with QIDO-RS, then retrieved with WADO-RS."""
    runtime: dict[str, Any] = {"node": transfer}
    studies, series = request.study_uids, request.series_uids
    scope = f"/studies/{quote_segment(studies[0])}" if len(studies) == 1 else ""
    what = "&".join(f"{k}={v}" for k, v in request.params)
    if request.object_uids:
        if len(series) == 1 and scope:
            scope += f"/series/{quote_segment(series[0])}"
        params = [("SOPInstanceUID", ",".join(quote_segment(u) for u in request.object_uids))]
        params += [("includefield", name) for name in _INSTANCE_FIELDS]
        found: dict[tuple[str, str], list[Instance]] = {}
        patients: dict[str, str] = {}
        for row in _qido_rows(query, f"{scope}/instances", params, run.timeout):
            key = (str(row.get("StudyInstanceUID") or ""), str(row.get("SeriesInstanceUID") or ""))
            if all(key) and row.get("SOPInstanceUID"):
                number = row.get("InstanceNumber")
                found.setdefault(key, []).append(Instance(str(row["SOPInstanceUID"]),
                                                          number if isinstance(number, int) else None,
                                                          sop_class_uid=str(row.get("SOPClassUID") or "") or None))
                patients[key[0]] = str(row.get("PatientID") or "")
        if not found:
            run.note("Nothing found", f"{query.name}: no instance matches {what}")
        for (study_uid, series_uid), instances in found.items():
            run.start_series(study_uid, patients[study_uid], batch, transfer.name, "wado-rs",
                             [(Series(series_uid, instances=tuple(instances)), runtime)])
    elif series:
        groups: dict[str, list[str]] = {studies[0]: list(series)} if len(studies) == 1 else {}
        if not groups:
            params = [("SeriesInstanceUID", ",".join(quote_segment(u) for u in series)),
                      ("includefield", "StudyInstanceUID"), ("includefield", "PatientID")]
            for row in _qido_rows(query, f"{scope}/series", params, run.timeout):
                study_uid, series_uid = str(row.get("StudyInstanceUID") or ""), str(row.get("SeriesInstanceUID") or "")
                if study_uid and series_uid:
                    groups.setdefault(study_uid, []).append(series_uid)
            if not groups:
                run.note("Nothing found", f"{query.name}: no series matches {what}")
        for study_uid, series_uids in groups.items():
            run.retrieve_study(query, study_uid, series_uids, runtime=runtime)
    else:
        recent = request.values("mostRecentResults")
        search_studies(run, query, _criteria(request), what=what, runtime=runtime,
                       most_recent=int(recent[0]) if recent and recent[0].isdigit() else None)


def _criteria(request: RsRequest) -> list[SearchCriteria]:
    """The study searches of a request: one per patient ID and accession number given."""
    base: dict[str, Any] = {"study_instance_uid": "\\".join(request.study_uids)}
    names = request.values("patientName")
    if names:
        base["patient_name"] = names[0]
    modalities = tuple(m for value in request.values("modalitiesInStudy") for m in value.split(",") if m)
    if modalities:
        base["modalities"] = modalities
    for key, name in (("lowerDateTime", "date_from"), ("upperDateTime", "date_to")):
        if request.values(key):
            base[name] = request.values(key)[0][:10]  # the date of 2024-01-02T10:00:00
    return [SearchCriteria(patient_id=patient, accession_number=accession, **base)
            for patient in request.patient_ids or ("",) for accession in request.accession_numbers or ("",)]


def _qido_rows(node: DicomWebNode, path: str, params: Sequence[tuple[str, str]], timeout: float) -> list[dict[str, Any]]:
    """The rows of one QIDO-RS request by UID (``/series?SeriesInstanceUID=``,
    ``/instances?SOPInstanceUID=``: no study needed, which :func:`dicomnb.sources.dicomweb.search` wants)."""
    from dicomnb.sources import dicomjson

    client = HttpClient(node.qido, where=f"{node.name} ({shown_url(node.qido)})", timeout=timeout,
                        headers=node.headers)
    try:
        with client.get(client.target(path, params), _ACCEPT_JSON) as response:
            if response.status == 204:
                return []
            if response.status != 200:
                raise status_error(client.where, response.status, "the search")

            def read(size: int) -> bytes:
                try:
                    return response.raw.read1(size)
                except (OSError, ValueError) as exc:
                    raise client.failure(exc) from exc

            return [dicomjson.row(dataset) for dataset in dicomjson.datasets(read, client.where)]
    finally:
        client.close()
