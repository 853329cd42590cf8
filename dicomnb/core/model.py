"""Plain, immutable records that flow from the sources into the catalog.

A source yields these records one by one (:data:`Item`); the catalog files them and
builds DataFrames from them at the edge. Records hold plain Python values (``str``,
``int`` or ``None``) so they pickle cheaply between processes.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "DICOM_FIELDS",
    "INSTANCE_COLUMNS",
    "AttachmentRecord",
    "ErrorRecord",
    "ImageRecord",
    "InstanceRecord",
    "Item",
    "MissingRecord",
    "SkippedRecord",
    "columns_of",
]

#: The DICOM attributes kept for every instance, by keyword, in table order.
DICOM_FIELDS: tuple[str, ...] = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "Modality",
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "TransferSyntaxUID",
)

#: Attributes held as integers (``None`` when absent or empty).
INTEGER_FIELDS = frozenset({"SeriesNumber", "InstanceNumber", "Rows", "Columns", "NumberOfFrames"})

_Record = TypeVar("_Record", bound=type)


def _pickled_as_tuple(cls: _Record) -> _Record:
    """Pickle a record as its class and its values in field order.

    Worker processes send records back by pickle. A frozen dataclass with slots pickles
    through ``__getstate__``/``__setstate__``, which sets its fields one by one on
    unpickling; its values as a plain tuple, given back to the class, are written in two
    thirds of the time and read in 60% of it. The record that comes out is equal to the one
    that went in.
    """
    values = operator.attrgetter(*(field.name for field in dataclasses.fields(cls)))

    def __reduce__(self: Any) -> tuple[type, tuple[Any, ...]]:  # noqa: N807 - the pickle protocol's name
        return cls, values(self)

    cls.__reduce__ = __reduce__  # type: ignore[assignment, method-assign]
    return cls


@_pickled_as_tuple
@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One DICOM instance (SOP instance) and where its file is.

    Text values are decoded with the file's SpecificCharacterSet; absent or empty
    values are ``None``. ``source`` is the kind of source (``"local"``, ``"zip"``,
    ``"dicomdir"``); ``origin`` is what the user named (folder, archive, DICOMDIR);
    ``member`` is the entry name inside an archive, when there is one.

    ``overrides`` holds the values shown in place of the file's own, as ``(keyword, value)``
    pairs (a manifest's ``overrideDicomTagsList``, :func:`dicomnb.retrieve`'s ``overrides``):
    the fields above already show them, and :func:`dicomnb.core.slices.dcmread` applies them to
    the dataset it reads; the file keeps what the archive sent. It is not a table column.
    """

    PatientID: str | None
    PatientName: str | None
    PatientBirthDate: str | None
    PatientSex: str | None
    StudyInstanceUID: str | None
    StudyDate: str | None
    StudyTime: str | None
    StudyDescription: str | None
    AccessionNumber: str | None
    SeriesInstanceUID: str | None
    SeriesNumber: int | None
    SeriesDescription: str | None
    Modality: str | None
    SOPClassUID: str | None
    SOPInstanceUID: str
    InstanceNumber: int | None
    Rows: int | None
    Columns: int | None
    NumberOfFrames: int | None
    TransferSyntaxUID: str | None
    path: str
    source: str = "local"
    origin: str = ""
    member: str | None = None
    overrides: tuple[tuple[str, str], ...] = dataclasses.field(default=(), metadata={"column": False})

    def replace(self, **changes: object) -> InstanceRecord:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


INSTANCE_COLUMNS: tuple[str, ...] = (*DICOM_FIELDS, "path", "source", "origin", "member")


@_pickled_as_tuple
@dataclass(frozen=True, slots=True)
class ImageRecord:
    """A standard (non-DICOM) image file: PNG, JPEG, TIFF, BMP or GIF."""

    path: str
    format: str
    size: int
    source: str = "local"
    origin: str = ""
    member: str | None = None


@_pickled_as_tuple
@dataclass(frozen=True, slots=True)
class AttachmentRecord:
    """A non-DICOM file on media that holds a DICOMDIR (report, 3D model, PDF, ...)."""

    path: str
    size: int
    kind: str
    source: str = "dicomdir"
    origin: str = ""
    member: str | None = None


@_pickled_as_tuple
@dataclass(frozen=True, slots=True)
class MissingRecord:
    """A DICOMDIR record whose file is not on the media (or is not the file it names)."""

    ReferencedFileID: str
    SOPInstanceUID: str | None
    SeriesInstanceUID: str | None
    StudyInstanceUID: str | None
    PatientID: str | None
    reason: str
    source: str = "dicomdir"
    origin: str = ""


@_pickled_as_tuple
@dataclass(frozen=True, slots=True)
class ErrorRecord:
    """A file (or archive entry) that could not be imported, with the typed error."""

    path: str
    error: str
    message: str
    source: str = "local"
    origin: str = ""
    member: str | None = None

    @classmethod
    def from_exception(
        cls, path: str, exc: BaseException, *, source: str = "local", origin: str = "",
        member: str | None = None,
    ) -> ErrorRecord:
        """Record ``exc`` (its class name and message) against ``path``."""
        return cls(path, type(exc).__name__, str(exc), source, origin, member)


@_pickled_as_tuple
@dataclass(frozen=True, slots=True)
class SkippedRecord:
    """A file that is neither DICOM nor an image nor an attachment: counted, not imported."""

    path: str
    reason: str = "not DICOM"


Item = InstanceRecord | ImageRecord | AttachmentRecord | MissingRecord | ErrorRecord | SkippedRecord


def columns_of(record_type: type) -> tuple[str, ...]:
    """Return the field names of a record class that are DataFrame columns, in order."""
    return tuple(f.name for f in dataclasses.fields(record_type) if f.metadata.get("column", True))
