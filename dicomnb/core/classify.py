"""Turn one file into one catalog item: an instance, an image, or a skipped file.

This is the unit of work of every batch import, run in worker processes for large
batches (see :mod:`dicomnb.core.parallel`), so it returns plain picklable records and
never raises for a bad file: the error is the item.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

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
from dicomnb.core.scan import FIRST_READ, _scan_or_fallback, _Window, read_header_bytes

__all__ = ["classify_bytes", "classify_file", "classify_files", "instance_from_fields"]


def instance_from_fields(
    fields: dict[str, object], path: str, source: str, origin: str, member: str | None = None
) -> InstanceRecord:
    """Build an :class:`InstanceRecord` from the attributes ``read_header`` returns."""
    return InstanceRecord(*(fields[name] for name in DICOM_FIELDS), path, source, origin, member)  # type: ignore[arg-type, call-arg]


def classify_file(path: str, source: str = "local", origin: str = "", member: str | None = None) -> Item:
    """Return what the file at ``path`` is, as an item; errors become :class:`ErrorRecord`."""
    try:
        with open(path, "rb", buffering=0) as f:
            head = f.read(FIRST_READ)
            size = os.fstat(f.fileno()).st_size if len(head) == FIRST_READ else len(head)
            kind = sniff(head)
            if kind.is_image:
                return ImageRecord(path, kind.value, size, source, origin, member)
            if kind is Kind.ZIP:
                return SkippedRecord(path, "ZIP archive inside a folder (import it with import_zip)")
            win = _Window(head, size, f)  # type: ignore[arg-type]
            fields = _scan_or_fallback(win, lambda: open(path, "rb"))
    except NotDicomError:
        return SkippedRecord(path)
    except DicomnbError as exc:
        return ErrorRecord.from_exception(path, exc, source=source, origin=origin, member=member)
    except OSError as exc:
        error = UnreadableFileError(f"cannot read the file: {exc.strerror or exc}")
        return ErrorRecord.from_exception(path, error, source=source, origin=origin, member=member)
    return instance_from_fields(fields, path, source, origin, member)


def classify_bytes(
    data: bytes, path: str, source: str, origin: str, member: str | None = None
) -> Item:
    """Like :func:`classify_file` for a file already in memory (an archive entry)."""
    kind = sniff(data)
    if kind.is_image:
        return ImageRecord(path, kind.value, len(data), source, origin, member)
    try:
        fields = read_header_bytes(data)
    except NotDicomError:
        return SkippedRecord(path)
    except DicomnbError as exc:
        return ErrorRecord.from_exception(path, exc, source=source, origin=origin, member=member)
    return instance_from_fields(fields, path, source, origin, member)


def classify_files(paths: Sequence[str], source: str = "local", origin: str = "") -> list[Item]:
    """Classify a batch of files (the function worker processes run)."""
    return [classify_file(path, source, origin) for path in paths]
