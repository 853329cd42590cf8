"""Values shown in place of a file's own: a manifest's ``overrideDicomTagsList``, ``retrieve(overrides=)``.

A Weasis manifest may list tags (``overrideDicomTagsList``) whose values from the manifest's
Patient and Study replace those of the files it retrieves: the archive's copies keep, say, a
department's PatientID while the portal that wrote the manifest knows the patient by another.
Weasis rewrites its cached copy of each file. dicomnb keeps the files exactly as the archive
sent them and carries the values on the catalog record instead (:attr:`InstanceRecord.overrides
<dicomnb.core.model.InstanceRecord>`): the tables show them, and every dataset read through the
record (:func:`dicomnb.core.slices.dcmread`: viewers, ``catalog.dataset``) has them applied.

Only text attributes can be overridden. UIDs identify the instance, its series and study in the
store and the catalog, and pixel-describing attributes would change how pixels decode, so both
are refused with a clear error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from dicomnb.core.errors import InputError
from dicomnb.core.model import DICOM_FIELDS, INTEGER_FIELDS

if TYPE_CHECKING:
    from dicomnb.core.model import InstanceRecord

__all__ = ["Overrides", "apply_to_dataset", "check_overrides", "overridden"]

#: ``(keyword, value)`` pairs, in the order given.
Overrides = tuple[tuple[str, str], ...]

#: The value representations of attributes that may be overridden: text, dates, numbers as text.
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM",
                       "UC", "UR", "UT"})
#: Text attributes that describe how the pixel data or the text itself is to be read.
_REFUSED = frozenset({"NumberOfFrames", "SpecificCharacterSet", "PhotometricInterpretation",
                      "RescaleSlope", "RescaleIntercept", "RescaleType", "PixelSpacing",
                      "ImagePositionPatient", "ImageOrientationPatient", "SliceThickness"})


def check_overrides(values: Mapping[str, object] | Iterable[tuple[str, object]] | None) -> Overrides:
    """``values`` as :data:`Overrides`, each keyword checked against the DICOM dictionary.

    ``values`` maps DICOM keywords (``"PatientName"``) to text; a number is written as text,
    ``None`` or ``""`` makes the attribute empty.

    Raises
    ------
    InputError
        A keyword that is not a DICOM one, or names an attribute that cannot be overridden (a
        UID, a sequence, binary data, or one that describes the pixel data).
    """
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    items = values.items() if isinstance(values, Mapping) else (values or ())
    checked: dict[str, str] = {}
    for keyword, value in items:
        tag = tag_for_keyword(keyword) if isinstance(keyword, str) else None
        if tag is None:
            raise InputError(f"{keyword!r} is not a DICOM keyword (such as 'PatientName' or 'StudyDescription'): "
                             "overrides are given by keyword")
        vr = dictionary_VR(tag)
        if vr == "UI":
            raise InputError(f"{keyword} cannot be overridden: UIDs identify the instances in the store and the "
                             "catalog")
        if vr not in _TEXT_VRS or keyword in _REFUSED:
            raise InputError(f"{keyword} cannot be overridden: only text attributes that do not describe the "
                             "pixel data can be")
        if isinstance(value, bool) or not isinstance(value, (str, int, float, type(None))):
            raise InputError(f"the value of {keyword} must be text, not {type(value).__name__}")
        text = "" if value is None else str(value)
        if keyword in INTEGER_FIELDS and text.strip():
            try:
                int(text)
            except ValueError:
                raise InputError(f"{keyword} must be a whole number, not {text!r}") from None
        checked[keyword] = text
    return tuple(checked.items())


def overridden(record: InstanceRecord, overrides: Overrides) -> InstanceRecord:
    """``record`` showing ``overrides`` (checked by :func:`check_overrides`) in its fields."""
    if not overrides or record.overrides == overrides:
        return record  # nothing to show, or shown already (a record kept from before a pause)
    changes: dict[str, Any] = {}
    for keyword, text in overrides:
        if keyword in DICOM_FIELDS:
            value: Any = text.strip() or None
            changes[keyword] = int(value) if value is not None and keyword in INTEGER_FIELDS else value
    merged = dict(record.overrides)
    merged.update(overrides)
    return record.replace(**changes, overrides=tuple(merged.items()))


def apply_to_dataset(ds: Any, overrides: Overrides) -> Any:
    """Set ``overrides`` in the pydicom dataset ``ds`` (the file it came from is left alone)."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import DataElement

    for keyword, text in overrides:
        tag = tag_for_keyword(keyword)
        if tag is not None:
            ds[tag] = DataElement(tag, dictionary_VR(tag), text or None)
    return ds
