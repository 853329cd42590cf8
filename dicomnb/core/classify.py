"""Turn one file into one catalog item: an instance, an image, or a skipped file.

This is the unit of work of every batch import, run in worker processes for large
batches (see :mod:`dicomnb.core.parallel`), so it returns plain picklable records and
never raises for a bad file: the error is the item.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, BinaryIO

from dicomnb.core.detect import Kind, sniff
from dicomnb.core.errors import DicomnbError, NotDicomError, UnreadableFileError
from dicomnb.core.model import (
    DICOM_FIELDS,
    ErrorRecord,
    ImageRecord,
    InstanceRecord,
    Item,
    SkippedRecord,
)
from dicomnb.core.scan import _O_RDONLY, _read_head, _scan_or_fallback, _Window

__all__ = ["classify_file", "classify_files", "classify_head", "instance_from_fields"]


_dicom_values = itemgetter(*DICOM_FIELDS)

# Patient, study and series attributes repeat from one instance to the next. Records share
# one string object per distinct value: the catalog holds one copy per value rather than
# one per instance (for 100,000 instances, about 50 MB instead of 130), and a batch sent
# back by a worker process pickles each value once (pickle writes a repeated object as a
# reference, and the copy unpickled is again shared).
_shared: dict[Any, Any] = {}
_SHARED_MAX = 10_000  # distinct values kept for sharing (about a megabyte); beyond it, start afresh


def instance_from_fields(
    fields: dict[str, object], path: str, source: str, origin: str, member: str | None = None
) -> InstanceRecord:
    """Build an :class:`InstanceRecord` from the attributes ``read_header`` returns."""
    (patient_id, patient_name, birth_date, sex, study_uid, study_date, study_time, study_description,
     accession, series_uid, series_number, series_description, modality, sop_class, sop_instance,
     instance_number, rows, columns, frames, transfer_syntax) = _dicom_values(fields)
    if len(_shared) > _SHARED_MAX:
        _shared.clear()
    share = _shared.setdefault
    return InstanceRecord(
        share(patient_id, patient_id), share(patient_name, patient_name), share(birth_date, birth_date),
        share(sex, sex), share(study_uid, study_uid), share(study_date, study_date),
        share(study_time, study_time), share(study_description, study_description),
        share(accession, accession), share(series_uid, series_uid), series_number,
        share(series_description, series_description), share(modality, modality),
        share(sop_class, sop_class), sop_instance, instance_number, rows, columns, frames,
        share(transfer_syntax, transfer_syntax), path, source, origin, member,  # type: ignore[arg-type]
    )


def classify_head(
    head: bytes, size: int, rest: BinaryIO | int | None, reopen: Callable[[], BinaryIO], path: str,
    source: str = "local", origin: str = "", member: str | None = None,
) -> Item:
    """Return what a file is from its first bytes; errors become :class:`ErrorRecord`.

    Parameters
    ----------
    head : bytes
        The first bytes of the file (:data:`~dicomnb.core.scan.FIRST_READ` of them, or all).
    size : int
        The size of the whole file.
    rest : file object, descriptor or None
        Where the header scanner reads on past ``head`` (``None``: ``head`` is all of it).
    reopen : callable
        Opens the whole file from its start, for the files the scanner gives to pydicom.
    path, source, origin, member
        What the item records.
    """
    try:
        if head[128:132] != b"DICM":  # a DICOM file is what sniff calls DICOM: skip it
            kind = sniff(head)
            if kind.is_image:
                return ImageRecord(path, kind.value, size, source, origin, member)
            if kind is Kind.ZIP:
                return SkippedRecord(path, "a ZIP archive inside the import (import it with import_zip)")
        fields = _scan_or_fallback(_Window(head, size, rest), reopen)
    except NotDicomError:
        return SkippedRecord(path)
    except DicomnbError as exc:
        return ErrorRecord.from_exception(path, exc, source=source, origin=origin, member=member)
    return instance_from_fields(fields, path, source, origin, member)


def classify_file(path: str, source: str = "local", origin: str = "", member: str | None = None) -> Item:
    """Return what the file at ``path`` is, as an item; errors become :class:`ErrorRecord`."""
    try:
        fd = os.open(path, _O_RDONLY)
        try:
            head, size = _read_head(fd)
            return classify_head(head, size, fd, lambda: open(path, "rb"), path, source, origin, member)
        finally:
            os.close(fd)
    except OSError as exc:
        error = UnreadableFileError(f"cannot read the file: {exc.strerror or exc}")
        return ErrorRecord.from_exception(path, error, source=source, origin=origin, member=member)


def classify_files(paths: Sequence[str], source: str = "local", origin: str = "") -> list[Item]:
    """Classify a batch of files (the function worker processes run)."""
    return [classify_file(path, source, origin) for path in paths]
