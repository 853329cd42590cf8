"""The catalog: every instance imported in this Python process, from any source.

Records are kept as small immutable objects keyed by SOP Instance UID (the same instance
imported twice is one row); pandas DataFrames are built only at the edge, when a view is
asked for, and cached until the catalog changes.
"""

from __future__ import annotations

import operator
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from dicomnb.core.model import (
    INSTANCE_COLUMNS,
    INTEGER_FIELDS,
    AttachmentRecord,
    ErrorRecord,
    ImageRecord,
    InstanceRecord,
    Item,
    MissingRecord,
    SkippedRecord,
    columns_of,
)
from dicomnb.core.report import ImportReport

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from dicomnb.sources import Source

__all__ = ["Catalog", "frame"]

_PATIENT = ["PatientID", "PatientName", "PatientBirthDate", "PatientSex"]
_STUDY = ["StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "StudyTime",
          "StudyDescription", "AccessionNumber"]
_SERIES = ["SeriesInstanceUID", "StudyInstanceUID", "PatientID", "SeriesNumber",
           "SeriesDescription", "Modality"]

#: Seconds between two calls of an import's ``progress`` callback.
PROGRESS_INTERVAL = 0.1


def frame(records: Iterable[Any], record_type: type) -> pd.DataFrame:
    """Build a DataFrame from records of one dataclass type (columns in field order)."""
    import pandas as pd

    columns = list(columns_of(record_type))
    getter = operator.attrgetter(*columns)
    df = pd.DataFrame.from_records([getter(r) for r in records], columns=columns)
    for name in columns:
        if name in INTEGER_FIELDS or name == "size":
            df[name] = df[name].astype("Int64")
    return df


def _modalities(values: pd.Series) -> str:
    return "\\".join(sorted({v for v in values if isinstance(v, str) and v}))


def _watched(items: Iterable[Item], report: ImportReport,
             progress: Callable[[ImportReport], object] | None,
             cancel: threading.Event | None) -> Iterator[Item]:
    """``items``, stopping when ``cancel`` is set and reporting ``progress`` every 0.1 s."""
    due = time.monotonic() + PROGRESS_INTERVAL
    for item in items:
        if cancel is not None and cancel.is_set():
            report.stopped = True
            return
        yield item
        if progress is not None and time.monotonic() >= due:
            progress(report)
            due = time.monotonic() + PROGRESS_INTERVAL


class Catalog:
    """The index of imported instances, with DataFrame views.

    Use the process-wide one, ``dicomnb.catalog``. Safe to fill from several threads.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._instances: dict[str, InstanceRecord] = {}
        self._images: dict[tuple[str, str | None], ImageRecord] = {}
        self._attachments: dict[tuple[str, str | None], AttachmentRecord] = {}
        self._missing: dict[tuple[str, str], MissingRecord] = {}
        self._errors: dict[tuple[str, str | None, str], ErrorRecord] = {}
        self._version = 0
        self._views: dict[str, tuple[int, pd.DataFrame]] = {}

    # -- filling -------------------------------------------------------------------------
    def ingest(self, source: Source, report: ImportReport | None = None, *,
               progress: Callable[[ImportReport], object] | None = None,
               cancel: threading.Event | None = None) -> ImportReport:
        """File every item of ``source``; return the report of what happened.

        ``progress(report)`` is called with the report as it grows, at most ten times a
        second and once at the end. When ``cancel`` is set the import stops at the next
        file: what was read stays in the catalog and ``report.stopped`` is True.
        """
        report = report if report is not None else ImportReport()
        report.sources.append(f"{source.kind}:{source.origin}")
        start = time.perf_counter()
        seen: set[str] = set()
        items = source.items()
        try:
            if progress is None and cancel is None:
                self.add_items(items, report, seen)
            else:
                self.add_items(_watched(items, report, progress, cancel), report, seen)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a stopped import lets the source release its files now
            report.seconds += time.perf_counter() - start
        if progress is not None:
            progress(report)
        return report

    def add_items(self, items: Iterable[Item], report: ImportReport | None = None,
                  seen: set[str] | None = None) -> ImportReport:
        """File items into the catalog; ``report`` (new if not given) counts them."""
        report = report if report is not None else ImportReport()
        seen = seen if seen is not None else set()
        instances = self._instances
        for item in items:
            with self._lock:
                if isinstance(item, InstanceRecord):
                    uid = item.SOPInstanceUID
                    known = instances.get(uid)
                    if known is None:
                        instances[uid] = item
                        report.added += 1
                        known = item
                    else:
                        report.duplicates += 1
                        if item.overrides and item.overrides != known.overrides:
                            # a manifest's values (overrideDicomTagsList) win over the file's own
                            instances[uid] = known = item
                    if uid not in seen:
                        seen.add(uid)
                        report.instances.append(known)
                elif isinstance(item, SkippedRecord):
                    report.skipped += 1
                    continue
                elif isinstance(item, ErrorRecord):
                    self._errors[(item.path, item.member, item.error)] = item
                    report.add_error(item)
                elif isinstance(item, ImageRecord):
                    self._images[(item.path, item.member)] = item
                    report.images.append(item)
                elif isinstance(item, AttachmentRecord):
                    self._attachments[(item.path, item.member)] = item
                    report.attachments.append(item)
                elif isinstance(item, MissingRecord):
                    self._missing[(item.origin, item.ReferencedFileID)] = item
                    report.missing.append(item)
                else:  # pragma: no cover - a source bug
                    raise TypeError(f"a source yielded {type(item).__name__}, not a catalog item")
                self._version += 1
        return report

    def clear(self) -> None:
        """Forget everything (files on disk are left alone)."""
        with self._lock:
            self._instances.clear()
            self._images.clear()
            self._attachments.clear()
            self._missing.clear()
            self._errors.clear()
            self._version += 1

    def remove(self, *, patients: Iterable[str] = (), studies: Iterable[str] = (),
               series: Iterable[str] = (), everything: bool = False) -> list[InstanceRecord]:
        """Forget the instances of these patients (PatientID), studies or series; return them.

        ``everything=True`` forgets every instance. The DICOMDIR records of missing files of
        those studies and series go with them; images, attachments and errors stay, and so
        do the files on disk (``$dicom:close``).
        """
        patient_ids, study_uids, series_uids = set(patients), set(studies), set(series)

        def closed(patient: str | None, study: str | None, one_series: str | None) -> bool:
            return everything or patient in patient_ids or study in study_uids or one_series in series_uids

        with self._lock:
            removed = [r for r in self._instances.values()
                       if closed(r.PatientID, r.StudyInstanceUID, r.SeriesInstanceUID)]
            for record in removed:
                del self._instances[record.SOPInstanceUID]
            gone = [key for key, m in self._missing.items()
                    if closed(m.PatientID, m.StudyInstanceUID, m.SeriesInstanceUID)]
            for key in gone:
                del self._missing[key]
            if removed or gone:
                self._version += 1
        return removed

    def __len__(self) -> int:
        return len(self._instances)

    def __contains__(self, sop_instance_uid: object) -> bool:
        return sop_instance_uid in self._instances

    def __repr__(self) -> str:
        return (f"<Catalog: {len(self._instances)} instances, {len(self._images)} images, "
                f"{len(self._errors)} errors>")

    def get(self, sop_instance_uid: str) -> InstanceRecord | None:
        """The record of one instance, or ``None``."""
        return self._instances.get(sop_instance_uid)

    def records(self) -> list[InstanceRecord]:
        """All instance records (a snapshot)."""
        with self._lock:
            return list(self._instances.values())

    # -- views ---------------------------------------------------------------------------
    def _view(self, name: str, build: Any) -> pd.DataFrame:
        with self._lock:
            cached = self._views.get(name)
            if cached is not None and cached[0] == self._version:
                return cached[1].copy()
            version = self._version
            df = build()
            self._views[name] = (version, df)
            return df.copy()

    @property
    def instances(self) -> pd.DataFrame:
        """One row per SOP instance: patient, study, series and image attributes, file path."""
        return self._view("instances", self._build_instances)

    def _build_instances(self) -> pd.DataFrame:
        df = frame(self._instances.values(), InstanceRecord)
        df = df.sort_values(["PatientID", "StudyDate", "StudyInstanceUID", "SeriesNumber",
                             "SeriesInstanceUID", "InstanceNumber", "SOPInstanceUID"],
                            na_position="last", kind="stable")
        return df.reset_index(drop=True)[list(INSTANCE_COLUMNS)]

    @property
    def patients(self) -> pd.DataFrame:
        """One row per PatientID with its studies, series and instances counted."""
        return self._view("patients", self._build_patients)

    def _build_patients(self) -> pd.DataFrame:
        df = self.instances
        grouped = df.groupby("PatientID", dropna=False, sort=True)
        out = grouped[_PATIENT[1:]].first()
        out["NumberOfPatientRelatedStudies"] = grouped["StudyInstanceUID"].nunique()
        out["NumberOfPatientRelatedSeries"] = grouped["SeriesInstanceUID"].nunique()
        out["NumberOfPatientRelatedInstances"] = grouped["SOPInstanceUID"].count()
        return out.reset_index()

    @property
    def studies(self) -> pd.DataFrame:
        """One row per study, with ModalitiesInStudy and its series and instances counted."""
        return self._view("studies", self._build_studies)

    def _build_studies(self) -> pd.DataFrame:
        df = self.instances
        grouped = df.groupby("StudyInstanceUID", dropna=False, sort=False)
        out = grouped[_STUDY[1:]].first()
        out["ModalitiesInStudy"] = grouped["Modality"].agg(_modalities)
        out["NumberOfStudyRelatedSeries"] = grouped["SeriesInstanceUID"].nunique()
        out["NumberOfStudyRelatedInstances"] = grouped["SOPInstanceUID"].count()
        out = out.reset_index()
        return out.sort_values(["PatientID", "StudyDate", "StudyInstanceUID"], na_position="last",
                               kind="stable").reset_index(drop=True)

    @property
    def series(self) -> pd.DataFrame:
        """One row per series, with its instances counted."""
        return self._view("series", self._build_series)

    def _build_series(self) -> pd.DataFrame:
        df = self.instances
        grouped = df.groupby("SeriesInstanceUID", dropna=False, sort=False)
        out = grouped[_SERIES[1:]].first()
        out["NumberOfSeriesRelatedInstances"] = grouped["SOPInstanceUID"].count()
        out = out.reset_index()[_SERIES + ["NumberOfSeriesRelatedInstances"]]
        return out.sort_values(["PatientID", "StudyInstanceUID", "SeriesNumber"], na_position="last",
                               kind="stable").reset_index(drop=True)

    @property
    def errors(self) -> pd.DataFrame:
        """Files that could not be imported: path, error type, message (and where from)."""
        return self._view("errors", lambda: frame(self._errors.values(), ErrorRecord))

    @property
    def images(self) -> pd.DataFrame:
        """Standard (non-DICOM) images found: PNG, JPEG, TIFF, BMP, GIF."""
        return self._view("images", lambda: frame(self._images.values(), ImageRecord))

    @property
    def attachments(self) -> pd.DataFrame:
        """Non-DICOM files on DICOMDIR media: path, size, kind."""
        return self._view("attachments", lambda: frame(self._attachments.values(), AttachmentRecord))

    @property
    def missing(self) -> pd.DataFrame:
        """DICOMDIR records whose files are not on the media."""
        return self._view("missing", lambda: frame(self._missing.values(), MissingRecord))

    # -- pixel data ----------------------------------------------------------------------
    def series_records(self, series_instance_uid: str) -> list[InstanceRecord]:
        """The instances of one series, by InstanceNumber."""
        with self._lock:
            records = [r for r in self._instances.values()
                       if r.SeriesInstanceUID == series_instance_uid]
        if not records:
            from dicomnb.core.errors import InputError

            raise InputError(f"no series {series_instance_uid!r} in the catalog: import it first "
                             "(see dicomnb.catalog.series for what is there)")
        records.sort(key=lambda r: (r.InstanceNumber is None, r.InstanceNumber or 0, r.path, r.member or ""))
        return records

    def dataset(self, sop_instance_uid: str, *, stop_before_pixels: bool = False) -> Any:
        """The pydicom dataset of one instance, read from its file or its archive entry."""
        from dicomnb.core.volume import read_dataset

        record = self._instances.get(sop_instance_uid)
        if record is None:
            from dicomnb.core.errors import InputError

            raise InputError(f"no instance {sop_instance_uid!r} in the catalog: import it first")
        return read_dataset(record, stop_before_pixels=stop_before_pixels)

    def load_series(self, series_instance_uid: str, *, modality_lut: bool = True) -> np.ndarray:
        """Pixel data of a series as a numpy volume sorted by slice position.

        Parameters
        ----------
        series_instance_uid : str
            A SeriesInstanceUID of the catalog.
        modality_lut : bool
            Apply the Modality LUT (RescaleSlope/Intercept: Hounsfield units for CT).
        """
        from dicomnb.core.volume import stack_volume

        return stack_volume(self.series_records(series_instance_uid), modality_lut)
