"""Weasis manifests: the XML or JSON lists of instances that ``$dicom:get -w`` and ``-i`` load.

A manifest names, per archive (an ``arcQuery``), the patients, studies, series and instances to
retrieve and how to reach them: a WADO-URI ``baseUrl`` (or a DICOMweb root when ``queryMode`` is
``DICOM_WEB``), HTTP headers (``httpTag``), a ``webLogin`` and ``additionalParameters`` appended to
every request. A ``Message`` may come with it for the user. This module only reads: it turns the
bytes into frozen dataclasses and computes the requests a retriever has to make; it never touches
the network (:func:`load_manifest` takes a ``fetch`` callable for URLs).

What is read, as Weasis reads it (``XmlManifestParser``, ``JsonManifestParser`` and
``ManifestModelBuilder`` in weasis-dicom-explorer; ``manifest.xsd`` and ``wado_query.xsd``):

* XML whose root is ``<manifest xmlns="http://www.weasis.org/xsd/2.5">`` (version 2.5), or the older
  ``<wado_query xmlns="http://www.weasis.org/xsd">`` (version 1, one archive, ``wadoURL`` instead of
  ``baseUrl``). A root without a namespace is accepted too, as Weasis matches local names only.
* JSON mirroring the 2.5 XML: ``{"manifest": {"arcQuery": [{"baseUrl": ..., "Patient": [...]}]}}``;
  any level may hold one object instead of a list, numbers and booleans stand for attributes.
* gzip detected by its magic bytes, whatever the name; JSON told from XML by its first character.
* Both spellings of the archive's extra query string: ``additionnalParameters`` (the schema's and
  older Weasis's) and ``additionalParameters`` (newer Weasis).

Deliberately stricter than Weasis, so that a broken manifest says what is wrong instead of loading
nothing: an unknown root, namespace or version, a missing ``baseUrl`` (when the archive lists
patients) and a missing Study/Series/SOP Instance UID raise :class:`ManifestError`. A DOCTYPE is
refused (Weasis disables DTDs too), which rules out entity expansion.

The retrieval contract (``LoadSeries`` in Weasis): each instance is fetched from
``baseUrl?requestType=WADO&studyUID=..&seriesUID=..&objectUID=..&contentType=application/dicom``,
plus ``&transferSyntax=`` (and ``&imageQuality=``) when the series asks for one, or from
``baseUrl + DirectDownloadFile``; ``additionalParameters`` is appended to either. A ``DICOM_WEB``
archive may stop at any level: :meth:`Manifest.partial` lists what must be completed with QIDO-RS.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import logging
import os
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, quote_plus, unquote, urlsplit
from xml.parsers import expat

from dicomnb.core.errors import ManifestError

__all__ = [
    "MANIFEST_NAMESPACE",
    "MAX_MANIFEST_BYTES",
    "WADO_QUERY_NAMESPACE",
    "ArcQuery",
    "HttpTag",
    "Instance",
    "Manifest",
    "Message",
    "PartialLevel",
    "Patient",
    "QueryMode",
    "Series",
    "Severity",
    "Study",
    "WadoRequest",
    "decode_inline_manifest",
    "load_manifest",
    "parse_inline_manifest",
    "parse_manifest",
]

LOGGER = logging.getLogger(__name__)

MANIFEST_NAMESPACE = "http://www.weasis.org/xsd/2.5"
WADO_QUERY_NAMESPACE = "http://www.weasis.org/xsd"
_WEASIS_XSD = re.compile(r"^https?://www\.weasis\.org/xsd(?:/(?P<version>[^/]+))?/?$")

#: A manifest larger than this once decompressed is refused (a gzip bomb, or not a manifest).
#: 100,000 instances take about 15 MB of XML.
MAX_MANIFEST_BYTES = 256 * 1024 * 1024

_GZIP_MAGIC = b"\x1f\x8b"

# The attributes Weasis asks QIDO-RS for when it completes a partial DICOM_WEB manifest
# (ManifestCompletion.STUDY_FIELDS / SERIES_FIELDS).
_STUDY_FIELDS = (
    "00080020,00080030,00080050,00080061,00080090,00081030,00100010,00100020,00100021,"
    "00100030,00100040,0020000D,00200010"
)
_SERIES_FIELDS = "0008103E,00080060,0020000E,00200011,00081190"


class QueryMode(enum.Enum):
    """How an archive of the manifest is reached (``queryMode``, Weasis's ``QueryMode``).

    ``DICOM`` (the default) and ``DB`` mean a manifest complete down to the instances, retrieved
    with WADO-URI; ``DICOM_WEB`` means a DICOMweb root that may stop at any level, the rest being
    queried with QIDO-RS and retrieved with WADO-RS.
    """

    DB = "DB"
    DICOM = "DICOM"
    DICOM_WEB = "DICOM_WEB"

    @classmethod
    def parse(cls, value: str | None) -> QueryMode:
        """The mode named ``value`` (any case); DICOM when absent or unknown, as in Weasis."""
        if value is None or not value.strip():
            return cls.DICOM
        try:
            return cls(value.strip().upper())
        except ValueError:
            LOGGER.warning("unknown queryMode %r in a manifest: read as DICOM (WADO-URI), as Weasis "
                           "does; the modes are DB, DICOM and DICOM_WEB", value)
            return cls.DICOM


class Severity(enum.Enum):
    """The level of a manifest :class:`Message` (``severity``: INFO, WARN or ERROR)."""

    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"

    @classmethod
    def parse(cls, value: str | None) -> Severity:
        """WARN when absent or unknown (Weasis's default); ``warning``/``err`` are accepted."""
        text = (value or "").strip().upper()
        if text in {"ERROR", "ERR"}:
            return cls.ERROR
        if text in {"INFO", "INFORMATION"}:
            return cls.INFO
        return cls.WARN


@dataclass(frozen=True)
class Message:
    """A message the archive wants shown to the user (``<Message title description severity>``),
    such as "no study found" or "access denied"; often the only content of a manifest."""

    title: str
    description: str
    severity: Severity = Severity.WARN


@dataclass(frozen=True)
class HttpTag:
    """An HTTP header to send with every request to the archive (``<httpTag key value>``)."""

    key: str
    value: str


@dataclass(frozen=True)
class Instance:
    """An ``<Instance>``: one SOP instance to retrieve.

    Attributes
    ----------
    sop_instance_uid : str
        ``SOPInstanceUID``.
    instance_number : int or None
        ``InstanceNumber``; Weasis uses it to tell the frames of one multi-frame instance apart.
    direct_download_file : str or None
        ``DirectDownloadFile``: a path relative to the archive's ``baseUrl`` fetched as it is,
        instead of a WADO-URI request.
    sop_class_uid : str or None
        ``SOPClassUID``, when the manifest gives it.
    """

    sop_instance_uid: str
    instance_number: int | None = None
    direct_download_file: str | None = None
    sop_class_uid: str | None = None


@dataclass(frozen=True)
class Series:
    """A ``<Series>`` and its instances (none in a ``DICOM_WEB`` manifest stopping here).

    ``wado_transfer_syntax_uid`` (``WadoTransferSyntaxUID``) asks WADO-URI for that transfer
    syntax (``*`` means "as stored" for dcm4chee); ``wado_compression_rate``
    (``WadoCompressionRate``) is then sent as ``imageQuality``.
    """

    series_instance_uid: str
    series_description: str = ""
    series_number: int | None = None
    modality: str = ""
    wado_transfer_syntax_uid: str | None = None
    wado_compression_rate: int | None = None
    direct_download_thumbnail: str | None = None
    instances: tuple[Instance, ...] = ()


@dataclass(frozen=True)
class Study:
    """A ``<Study>`` and its series."""

    study_instance_uid: str
    study_description: str = ""
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    study_id: str = ""
    referring_physician_name: str = ""
    series: tuple[Series, ...] = ()


@dataclass(frozen=True)
class Patient:
    """A ``<Patient>`` and its studies. Its values, and its studies', replace the files' own
    for the tags of ``overrideDicomTagsList`` (:meth:`ArcQuery.overrides`)."""

    patient_id: str
    patient_name: str = ""
    issuer_of_patient_id: str = ""
    patient_birth_date: str = ""
    patient_birth_time: str = ""
    patient_sex: str = ""
    studies: tuple[Study, ...] = ()


@dataclass(frozen=True)
class WadoRequest:
    """One instance to fetch: the URL, the headers to send and the UIDs it should deliver.

    ``protocol`` is ``"WADO-URI"`` (a plain GET returning ``application/dicom``) or ``"WADO-RS"``
    (a ``DICOM_WEB`` archive: GET with ``Accept: multipart/related; type="application/dicom"``).
    """

    url: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    protocol: str = "WADO-URI"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PartialLevel:
    """A level of a ``DICOM_WEB`` manifest given without its children, to complete over DICOMweb.

    Attributes
    ----------
    level : str
        ``"PATIENT"`` (no studies: query them with ``qido_url``), ``"STUDY"`` (no series) or
        ``"SERIES"`` (no instances: list them with ``qido_url``, or fetch the whole series from
        ``retrieve_url`` with WADO-RS).
    base_url : str
        The archive's DICOMweb root, without a trailing slash.
    qido_url : str
        The QIDO-RS query Weasis sends to complete this level (``includefield`` as Weasis asks).
    retrieve_url : str
        The WADO-RS URL of the study or series (empty for a patient).
    headers : tuple of (str, str)
        The archive's headers (httpTag, webLogin), plus ``Accept: application/dicom+json``.
    """

    level: str
    base_url: str
    patient_id: str
    issuer_of_patient_id: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    qido_url: str = ""
    retrieve_url: str = ""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ArcQuery:
    """An ``<arcQuery>``: one archive, how to reach it, and what to retrieve from it.

    Attributes
    ----------
    arc_id : str
        ``arcId`` (empty in a version 1 ``wado_query``).
    base_url : str
        ``baseUrl`` (``wadoURL`` in version 1): the WADO-URI endpoint, or the DICOMweb root for
        ``DICOM_WEB``. Empty only for an archive that lists no patient (a message alone).
    require_only_sop_instance_uid : bool
        ``requireOnlySOPInstanceUID``: send empty ``studyUID`` and ``seriesUID`` in WADO-URI.
    additional_parameters : str
        ``additionalParameters`` / ``additionnalParameters``: appended to every request URL
        (``&session=...``).
    override_dicom_tags_list : tuple of int
        ``overrideDicomTagsList``: the tags whose manifest values replace those of the files
        (:meth:`overrides`; the catalog shows them, the files are left as sent).
    query_mode : QueryMode
        ``queryMode``.
    web_login : str or None
        ``webLogin``: the base64 ``user:password`` sent as ``Authorization: Basic``.
    series_retrieve : bool or None
        ``seriesRetrieve``: for ``DICOM_WEB``, fetch a series without instances in one request.
    http_tags : tuple of HttpTag
        The ``<httpTag>`` headers, in order.
    messages : tuple of Message
        The ``<Message>`` to show the user.
    patients : tuple of Patient
    """

    arc_id: str = ""
    base_url: str = ""
    require_only_sop_instance_uid: bool = False
    additional_parameters: str = ""
    override_dicom_tags_list: tuple[int, ...] = ()
    query_mode: QueryMode = QueryMode.DICOM
    web_login: str | None = None
    series_retrieve: bool | None = None
    http_tags: tuple[HttpTag, ...] = ()
    messages: tuple[Message, ...] = ()
    patients: tuple[Patient, ...] = ()

    @property
    def is_dicom_web(self) -> bool:
        """True when the archive is a DICOMweb root (``queryMode="DICOM_WEB"``)."""
        return self.query_mode is QueryMode.DICOM_WEB

    def headers(self) -> dict[str, str]:
        """The HTTP headers of every request to this archive: the ``httpTag`` (a later one with the
        same key wins) and ``Authorization: Basic <webLogin>`` when there is a ``webLogin``."""
        headers = {tag.key: tag.value for tag in self.http_tags}
        if self.web_login:
            headers["Authorization"] = f"Basic {self.web_login}"
        return headers

    def overrides(self, patient: Patient, study: Study | None = None) -> dict[str, str]:
        """The values of ``overrideDicomTagsList`` for the instances of ``patient`` (and ``study``).

        By DICOM keyword, as Weasis's ``LoadSeries.applyOverrides``: each listed tag takes the
        patient's value, else the study's; a tag neither holds, or holds empty, keeps the files'
        value, and StudyInstanceUID is never overridden (it identifies the study).
        """
        values: dict[str, str] = {}
        for tag in self.override_dicom_tags_list:
            held = _OVERRIDABLE.get(tag)
            if held is None:
                continue
            keyword, level, name = held
            owner = patient if level == "patient" else study
            value = str(getattr(owner, name, "") or "") if owner is not None else ""
            if value.strip():
                values[keyword] = value
        return values

    def instance_count(self) -> int:
        """How many instances the manifest lists for this archive (without completion)."""
        return sum(len(se.instances) for p in self.patients for st in p.studies for se in st.series)

    def wado_uri(self, study: Study, series: Series, instance: Instance) -> str:
        """The URL Weasis fetches ``instance`` from: a WADO-URI request, or ``DirectDownloadFile``.

        ``contentType=application/dicom`` is written with a literal ``/``: some servers (Orthanc
        1.10) do not decode ``%2F`` in a query string. A ``DirectDownloadFile`` that is already an
        absolute http(s) URL is used as it is.
        """
        direct = instance.direct_download_file
        if direct:
            url = direct if _is_http_url(direct) else self.base_url + direct
            # Weasis appends the parameters as they are; a URL without a query needs a "?" first
            return url + _query_suffix(self.additional_parameters, first="&" if "?" in url else "?")
        study_uid = series_uid = ""
        if not self.require_only_sop_instance_uid:
            study_uid, series_uid = study.study_instance_uid, series.series_instance_uid
        url = (
            f"{self.base_url}{'&' if '?' in self.base_url else '?'}requestType=WADO"
            f"&studyUID={_uid(study_uid)}&seriesUID={_uid(series_uid)}"
            f"&objectUID={_uid(instance.sop_instance_uid)}&contentType=application/dicom"
        )
        syntax = series.wado_transfer_syntax_uid
        if syntax:
            url += f"&transferSyntax={quote(syntax, safe='.*')}"
            rate = series.wado_compression_rate
            if rate is not None and rate > 0:
                url += f"&imageQuality={rate}"
        return url + _query_suffix(self.additional_parameters)

    def wado_rs_url(self, study: Study, series: Series | None = None,
                    instance: Instance | None = None) -> str:
        """The WADO-RS URL of a study, a series or an instance of this DICOMweb archive."""
        url = f"{self.base_url.rstrip('/')}/studies/{_uid(study.study_instance_uid)}"
        if series is not None:
            url += f"/series/{_uid(series.series_instance_uid)}"
            if instance is not None:
                url += f"/instances/{_uid(instance.sop_instance_uid)}"
        return url

    def wado_requests(self) -> Iterator[WadoRequest]:
        """One request per SOP instance listed, in manifest order.

        An instance listed twice (Weasis lists a multi-frame instance once per frame, told apart
        by InstanceNumber) is fetched once. ``DICOM_WEB`` archives get WADO-RS instance URLs
        (with ``additionalParameters``); the others WADO-URI (see :meth:`wado_uri`).
        """
        headers = tuple(self.headers().items())
        seen: set[tuple[str, str, str]] = set()
        for patient in self.patients:
            for study in patient.studies:
                for series in study.series:
                    for instance in series.instances:
                        key = (study.study_instance_uid, series.series_instance_uid,
                               instance.sop_instance_uid)
                        if key in seen:
                            continue
                        seen.add(key)
                        if self.is_dicom_web:
                            url = (self.wado_rs_url(study, series, instance)
                                   + _query_suffix(self.additional_parameters, first="?"))
                            protocol = "WADO-RS"
                        else:
                            url, protocol = self.wado_uri(study, series, instance), "WADO-URI"
                        yield WadoRequest(url, *key, protocol=protocol, headers=headers)

    def partial(self) -> tuple[PartialLevel, ...]:
        """What a ``DICOM_WEB`` archive leaves to complete (empty for the other modes).

        A patient without studies, a study without series and a series without instances are
        partial, as in Weasis's ``ManifestCompletion``; the QIDO-RS URLs are those Weasis sends.
        """
        if not self.is_dicom_web:
            return ()
        base = self.base_url.rstrip("/")
        headers = dict(self.headers())
        headers.setdefault("Accept", "application/dicom+json")
        header_items = tuple(headers.items())
        levels: list[PartialLevel] = []
        for patient in self.patients:
            if not patient.studies:
                query = f"{base}/studies?00100020={quote_plus(patient.patient_id)}"
                if patient.issuer_of_patient_id:
                    query += f"&00100021={quote_plus(patient.issuer_of_patient_id)}"
                levels.append(PartialLevel(
                    "PATIENT", base, patient.patient_id, patient.issuer_of_patient_id,
                    qido_url=f"{query}&includefield={_STUDY_FIELDS}", headers=header_items))
            for study in patient.studies:
                study_url = self.wado_rs_url(study)
                if not study.series:
                    levels.append(PartialLevel(
                        "STUDY", base, patient.patient_id, patient.issuer_of_patient_id,
                        study.study_instance_uid,
                        qido_url=f"{study_url}/series?includefield={_SERIES_FIELDS}",
                        retrieve_url=study_url, headers=header_items))
                for series in study.series:
                    if not series.instances:
                        series_url = self.wado_rs_url(study, series)
                        levels.append(PartialLevel(
                            "SERIES", base, patient.patient_id, patient.issuer_of_patient_id,
                            study.study_instance_uid, series.series_instance_uid,
                            qido_url=f"{series_url}/instances", retrieve_url=series_url,
                            headers=header_items))
        return tuple(levels)


@dataclass(frozen=True)
class Manifest:
    """A whole manifest.

    Attributes
    ----------
    arc_queries : tuple of ArcQuery
        One per archive, in document order.
    version : str
        ``"2.5"`` (a ``manifest``, XML or JSON) or ``"1"`` (a ``wado_query``).
    format : str
        ``"xml"`` or ``"json"``.
    uid : str or None
        The manifest's ``uid`` attribute.
    """

    arc_queries: tuple[ArcQuery, ...]
    version: str = "2.5"
    format: str = "xml"
    uid: str | None = None

    @property
    def messages(self) -> tuple[Message, ...]:
        """Every ``Message`` of every archive, to show the user before anything else."""
        return tuple(m for arc in self.arc_queries for m in arc.messages)

    @property
    def patients(self) -> tuple[Patient, ...]:
        """Every patient of every archive."""
        return tuple(p for arc in self.arc_queries for p in arc.patients)

    def instance_count(self) -> int:
        """How many instances the manifest lists (before any DICOMweb completion)."""
        return sum(arc.instance_count() for arc in self.arc_queries)

    def wado_requests(self) -> Iterator[WadoRequest]:
        """The requests for every instance listed, archive after archive (see
        :meth:`ArcQuery.wado_requests`)."""
        for arc in self.arc_queries:
            yield from arc.wado_requests()

    def partial(self) -> tuple[PartialLevel, ...]:
        """Every level a ``DICOM_WEB`` archive leaves to complete with QIDO-RS (empty when the
        manifest is complete)."""
        return tuple(level for arc in self.arc_queries for level in arc.partial())

    @property
    def is_partial(self) -> bool:
        """True when something must be completed over DICOMweb before it can be retrieved."""
        return bool(self.partial())


# --- reading -----------------------------------------------------------------------------------


def load_manifest(source: bytes | bytearray | str | os.PathLike[str], *,
                  fetch: Callable[[str], bytes] | None = None) -> Manifest:
    """Read a manifest from bytes, a file (path or ``file:`` URI) or, with ``fetch``, a URL.

    Parameters
    ----------
    source : bytes, str or path
        The manifest itself (bytes), a local path, a ``file:`` URI or an http(s) URL.
    fetch : callable, optional
        ``fetch(url) -> bytes``, called for an http(s) URL; the network belongs to the caller.

    Raises
    ------
    ManifestError
        The manifest cannot be read (see :func:`parse_manifest`), the file does not exist, or a
        URL was given without ``fetch``.
    """
    if isinstance(source, bytes | bytearray):
        return parse_manifest(bytes(source))
    text = os.fspath(source)
    if _is_http_url(text):
        if fetch is None:
            raise ManifestError(f"{text} is a URL: pass fetch= (a callable returning the bytes) "
                                "to load_manifest, or download it first")
        return parse_manifest(fetch(text))
    path = Path(_file_uri_to_path(text) if text.lower().startswith("file:") else text)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read the manifest {path}: {exc.strerror or exc}") from exc
    return parse_manifest(data)


def decode_inline_manifest(data: str) -> bytes:
    """The manifest bytes of a ``$dicom:get -i DATA`` value: base64 of gzip, or plain base64.

    Spaces are read as ``+``: a ``+`` left unescaped in a ``weasis://`` URI becomes a space when
    the URI is decoded. URL-safe base64 (``-``, ``_``) and missing padding are accepted.
    """
    text = "".join(data.strip().replace(" ", "+").split())
    if not text:
        raise ManifestError("the inline manifest (-i) is empty: give the base64 of the gzipped "
                            "manifest")
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ManifestError(f"the inline manifest (-i) is not base64 ({exc}): it must be the "
                            "base64 of the gzipped XML or JSON manifest") from exc
    return _gunzip(raw) if raw.startswith(_GZIP_MAGIC) else raw


def parse_inline_manifest(data: str) -> Manifest:
    """Parse a ``$dicom:get -i DATA`` value (see :func:`decode_inline_manifest`)."""
    return parse_manifest(decode_inline_manifest(data))


def parse_manifest(data: bytes | str) -> Manifest:
    """Parse a manifest: XML or JSON, gzipped or not (told apart by content, not by name).

    Raises
    ------
    ManifestError
        Not gzip/XML/JSON, another root or namespace, an unknown version, or a required
        attribute missing; the message says where and what to fix.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if data.startswith(_GZIP_MAGIC):
        data = _gunzip(data)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"the manifest is larger than {MAX_MANIFEST_BYTES // 2**20} MiB: "
                            "split it into several manifests")
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        raise ManifestError("the manifest is empty: expected XML (<manifest ...>) or JSON "
                            '({"manifest": ...})')
    if head.startswith((b"{", b"[")):  # Weasis sniffs "{"; a JSON array gets a precise error
        return _read_json(data)
    if head.startswith(b"<"):
        return _read_xml(data)
    raise ManifestError("this is not a manifest: it is neither XML (<manifest ...>) nor JSON "
                        f'({{"manifest": ...}}) nor gzip; it starts with {head[:20]!r}')


def _gunzip(data: bytes) -> bytes:
    # The size is checked while inflating, so a gzip bomb stops early; gzip may hold several members.
    out = bytearray()
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            while True:
                out += inflater.decompress(data, MAX_MANIFEST_BYTES + 1 - len(out))
                if len(out) > MAX_MANIFEST_BYTES:
                    raise ManifestError(f"the gzipped manifest inflates past "
                                        f"{MAX_MANIFEST_BYTES // 2**20} MiB: refused")
                data = inflater.unconsumed_tail
                if inflater.eof or not data:
                    break
        except zlib.error as exc:
            raise ManifestError(f"the manifest starts like gzip but cannot be decompressed ({exc}): "
                                "the file is corrupt") from exc
        if not inflater.eof:
            raise ManifestError("the gzipped manifest is cut short: download it again")
        rest = inflater.unused_data
        data = rest if rest.startswith(_GZIP_MAGIC) else b""
    return bytes(out)


class _Node(Protocol):
    """One element of either format, as Weasis's AttributeSource sees it."""

    where: str

    def attribute(self, name: str) -> str | None: ...

    def children(self, name: str) -> Sequence[_Node]: ...


class _XmlNode:
    __slots__ = ("attrs", "kids", "name", "where")

    def __init__(self, name: str, attrs: dict[str, str], line: int) -> None:
        self.name = name
        self.attrs = attrs
        self.kids: list[_XmlNode] = []
        self.where = f"<{name}> on line {line}"

    def attribute(self, name: str) -> str | None:
        return self.attrs.get(name)

    def children(self, name: str) -> Sequence[_XmlNode]:
        return [kid for kid in self.kids if kid.name == name]


class _JsonNode:
    __slots__ = ("obj", "where")

    def __init__(self, obj: dict[str, Any], where: str) -> None:
        self.obj = obj
        self.where = where

    def attribute(self, name: str) -> str | None:
        value = self.obj.get(name)
        # scalars are attributes (as JsonAttributeSource): true/false, numbers as written
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        return None

    def children(self, name: str) -> Sequence[_JsonNode]:
        value = self.obj.get(name)
        items = [value] if isinstance(value, dict) else value if isinstance(value, list) else []
        return [_JsonNode(item, f"{self.where}.{name}[{i}]")
                for i, item in enumerate(items) if isinstance(item, dict)]


def _local(name: str) -> tuple[str, str]:
    namespace, _, local = name.rpartition("}")
    return namespace, local


def _read_xml(data: bytes) -> Manifest:
    parser = expat.ParserCreate(namespace_separator="}")
    stack: list[_XmlNode] = []
    roots: list[_XmlNode] = []
    namespaces: list[str] = []

    def refuse_doctype(*_: object) -> None:
        raise ManifestError(f"line {parser.CurrentLineNumber}: the manifest declares a DOCTYPE; "
                            "manifests may not (DTDs and entities are refused for safety)")

    def start(name: str, attrs: dict[str, str]) -> None:
        namespace, local = _local(name)
        node = _XmlNode(local, {_local(k)[1]: v for k, v in attrs.items()}, parser.CurrentLineNumber)
        if stack:
            stack[-1].kids.append(node)
        else:
            roots.append(node)
            namespaces.append(namespace)
        stack.append(node)

    def end(_: str) -> None:
        stack.pop()

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_doctype
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise ManifestError(f"the manifest is not well-formed XML: {expat.errors.messages[exc.code]} "
                            f"on line {exc.lineno}, column {exc.offset + 1}") from exc
    root, namespace = roots[0], namespaces[0]
    version = _xml_version(root.name, namespace)
    if version == "1":
        return Manifest((_arc_query(root, legacy=True),), version="1", format="xml")
    arcs = tuple(_arc_query(arc) for arc in root.children("arcQuery"))
    return Manifest(arcs, version=version, format="xml", uid=root.attribute("uid"))


def _xml_version(root: str, namespace: str) -> str:
    expected = {"manifest": ("2.5", MANIFEST_NAMESPACE), "wado_query": ("1", WADO_QUERY_NAMESPACE)}
    if root not in expected:
        raise ManifestError(
            f"the root element is <{root}>, not a Weasis manifest: it must be "
            f'<manifest xmlns="{MANIFEST_NAMESPACE}"> (or the older <wado_query '
            f'xmlns="{WADO_QUERY_NAMESPACE}">)')
    version, wanted = expected[root]
    if not namespace or namespace.rstrip("/") == wanted:
        return version
    match = _WEASIS_XSD.match(namespace)
    if match:
        found = match.group("version") or "1"
        raise ManifestError(
            f"<{root}> is in namespace {namespace} (manifest version {found}), which dicomnb does "
            f'not read: it reads <manifest xmlns="{MANIFEST_NAMESPACE}"> (version 2.5) and '
            f'<wado_query xmlns="{WADO_QUERY_NAMESPACE}"> (version 1)')
    raise ManifestError(f"<{root}> is in namespace {namespace!r}, not Weasis's: use "
                        f'xmlns="{wanted}"')


def _read_json(data: bytes) -> Manifest:
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise ManifestError(f"the JSON manifest is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise ManifestError(f"the manifest is not valid JSON: {exc.msg} on line {exc.lineno}, "
                            f"column {exc.colno}") from exc
    body = document.get("manifest") if isinstance(document, dict) else None
    if not isinstance(body, dict):
        found = sorted(document)[:5] if isinstance(document, dict) else type(document).__name__
        raise ManifestError('a JSON manifest is an object {"manifest": {"arcQuery": [...]}}; this '
                            f"one has {found}")
    root = _JsonNode(body, "manifest")
    arcs = tuple(_arc_query(arc) for arc in root.children("arcQuery"))
    return Manifest(arcs, version="2.5", format="json", uid=root.attribute("uid"))


def _arc_query(node: _Node, *, legacy: bool = False) -> ArcQuery:
    patients = tuple(_patient(p) for p in node.children("Patient"))
    base_url = (node.attribute("wadoURL" if legacy else "baseUrl") or "").strip()
    name = "wadoURL" if legacy else "baseUrl"
    if patients and not base_url:
        raise ManifestError(f"{node.where} has no {name}: give the address the instances are "
                            f'retrieved from, e.g. {name}="http://pacs:8080/wado"')
    if base_url and not _is_http_url(base_url):
        raise ManifestError(f"{node.where}: {name} {base_url!r} must be an http:// or https:// URL")
    additional = node.attribute("additionalParameters")
    if additional is None:
        additional = node.attribute("additionnalParameters")
    series_retrieve = node.attribute("seriesRetrieve")
    arc = ArcQuery(
        arc_id="" if legacy else (node.attribute("arcId") or ""),
        base_url=base_url,
        require_only_sop_instance_uid=_boolean(node.attribute("requireOnlySOPInstanceUID")),
        additional_parameters=additional or "",
        override_dicom_tags_list=_tag_list(node.attribute("overrideDicomTagsList"), node.where),
        query_mode=QueryMode.DICOM if legacy else QueryMode.parse(node.attribute("queryMode")),
        web_login=(node.attribute("webLogin") or "").strip() or None,
        series_retrieve=None if series_retrieve is None else _boolean(series_retrieve),
        http_tags=tuple(HttpTag(key, value) for tag in node.children("httpTag")
                        if (key := tag.attribute("key")) is not None
                        and (value := tag.attribute("value")) is not None),
        messages=tuple(_message(m) for m in node.children("Message")
                       if (m.attribute("title") or m.attribute("description"))),
        patients=patients,
    )
    if arc.is_dicom_web:
        for patient in arc.patients:
            if not patient.studies and not patient.patient_id:
                raise ManifestError(f"{node.where}: a DICOM_WEB Patient without studies needs a "
                                    "PatientID, to query its studies with QIDO-RS")
    return arc


def _message(node: _Node) -> Message:
    return Message(title=node.attribute("title") or "",
                   description=node.attribute("description") or "",
                   severity=Severity.parse(node.attribute("severity")))


def _patient(node: _Node) -> Patient:
    return Patient(**_attributes(node, _PATIENT_ATTRIBUTES),
                   studies=tuple(_study(s) for s in node.children("Study")))


def _study(node: _Node) -> Study:
    return Study(study_instance_uid=_required_uid(node, "StudyInstanceUID"), **_attributes(node, _STUDY_ATTRIBUTES),
                 series=tuple(_series(s) for s in node.children("Series")))


def _series(node: _Node) -> Series:
    return Series(
        series_instance_uid=_required_uid(node, "SeriesInstanceUID"),
        series_description=node.attribute("SeriesDescription") or "",
        series_number=_integer(node.attribute("SeriesNumber")),
        modality=node.attribute("Modality") or "",
        wado_transfer_syntax_uid=(node.attribute("WadoTransferSyntaxUID") or "").strip() or None,
        wado_compression_rate=_integer(node.attribute("WadoCompressionRate")),
        direct_download_thumbnail=node.attribute("DirectDownloadThumbnail") or None,
        instances=tuple(_instance(i) for i in node.children("Instance")),
    )


def _instance(node: _Node) -> Instance:
    return Instance(
        sop_instance_uid=_required_uid(node, "SOPInstanceUID"),
        instance_number=_integer(node.attribute("InstanceNumber")),
        direct_download_file=node.attribute("DirectDownloadFile") or None,
        sop_class_uid=node.attribute("SOPClassUID") or None,
    )


def _required_uid(node: _Node, name: str) -> str:
    value = (node.attribute(name) or "").strip()
    if not value:
        raise ManifestError(f"{node.where} has no {name}: every {name.removesuffix('UID')} of a "
                            f"manifest needs its {name}")
    return value


def _boolean(value: str | None) -> bool:
    # Java's Boolean.parseBoolean: "true" in any case, everything else false
    return (value or "").strip().lower() == "true"


def _integer(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        try:
            number = float(value)
        except ValueError:
            return None
        return int(number) if number.is_integer() else None


#: The attributes of a ``<Patient>`` and a ``<Study>`` besides the UID, by keyword: the tag and
#: the field of :class:`Patient` or :class:`Study` they are read into. ``overrideDicomTagsList``
#: may name any of these tags (:meth:`ArcQuery.overrides`).
_PATIENT_ATTRIBUTES: dict[str, tuple[int, str]] = {
    "PatientID": (0x00100020, "patient_id"),
    "PatientName": (0x00100010, "patient_name"),
    "IssuerOfPatientID": (0x00100021, "issuer_of_patient_id"),
    "PatientBirthDate": (0x00100030, "patient_birth_date"),
    "PatientBirthTime": (0x00100032, "patient_birth_time"),
    "PatientSex": (0x00100040, "patient_sex"),
}
_STUDY_ATTRIBUTES: dict[str, tuple[int, str]] = {
    "StudyDescription": (0x00081030, "study_description"),
    "StudyDate": (0x00080020, "study_date"),
    "StudyTime": (0x00080030, "study_time"),
    "AccessionNumber": (0x00080050, "accession_number"),
    "StudyID": (0x00200010, "study_id"),
    "ReferringPhysicianName": (0x00080090, "referring_physician_name"),
}
#: The same by tag: the keyword, the level and the field.
_OVERRIDABLE: dict[int, tuple[str, str, str]] = {
    tag: (keyword, level, name)
    for level, attributes in (("patient", _PATIENT_ATTRIBUTES), ("study", _STUDY_ATTRIBUTES))
    for keyword, (tag, name) in attributes.items()
}


def _attributes(node: _Node, attributes: dict[str, tuple[int, str]]) -> dict[str, str]:
    """The values of ``attributes`` on ``node`` by field name (empty when absent)."""
    return {name: node.attribute(keyword) or "" for keyword, (_tag, name) in attributes.items()}


def _tag_list(value: str | None, where: str) -> tuple[int, ...]:
    tags: list[int] = []
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            if item.startswith("#"):  # Java's Integer.decode, which Weasis reads the list with
                item = "0x" + item[1:]
            tags.append(int(item, 0) if item[:2].lower() == "0x" else int(item))
        except ValueError:
            LOGGER.warning("%s: overrideDicomTagsList item %r is not a tag (0x00100010): skipped",
                           where, item)
    return tuple(tags)


def _is_http_url(text: str) -> bool:
    parts = urlsplit(text.strip())
    return parts.scheme.lower() in {"http", "https"} and bool(parts.netloc)


def _file_uri_to_path(uri: str) -> str:
    parts = urlsplit(uri)
    path = unquote(parts.path)
    # file:///C:/dir → C:/dir on Windows; file://host/share → //host/share
    if re.match(r"^/[A-Za-z]:", path):
        path = path[1:]
    elif parts.netloc and parts.netloc != "localhost":
        path = f"//{parts.netloc}{path}"
    return path


def _uid(uid: str) -> str:
    return quote(uid, safe=".")


def _query_suffix(parameters: str, first: str = "&") -> str:
    """``additionalParameters`` as Weasis appends them (``&a=b``), with the ``&`` added if missing."""
    parameters = parameters.strip()
    if not parameters:
        return ""
    if parameters[0] in "&?":
        parameters = parameters[1:]
    return f"{first}{parameters}" if parameters else ""
