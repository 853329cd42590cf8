"""The report of one import: what was filed, what was not, and why."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from dicomnb.core.model import (
    AttachmentRecord,
    ErrorRecord,
    ImageRecord,
    InstanceRecord,
    MissingRecord,
)

__all__ = ["ImportReport"]


@dataclass
class ImportReport:
    """What one import (one or several sources) brought into the catalog.

    Attributes
    ----------
    instances : list of InstanceRecord
        The instances found, each once, also across the sources of one import (an instance
        already in the catalog is listed with the record the catalog keeps and counted in
        ``duplicates``).
    added : int
        Instances new to the catalog.
    duplicates : int
        Instances found again (already in the catalog, or twice in this import).
    skipped : int
        Files that are neither DICOM nor a standard image (nor an attachment).
    images, attachments, missing, errors : list
        The other records of this import.
    tree : pandas.DataFrame or None
        For a DICOMDIR, its PATIENT/STUDY/SERIES/IMAGE records with their status.
    stopped : bool
        The import was stopped before it read everything (what it read is in the catalog).
    """

    sources: list[str] = field(default_factory=list)
    instances: list[InstanceRecord] = field(default_factory=list)
    added: int = 0
    duplicates: int = 0
    skipped: int = 0
    images: list[ImageRecord] = field(default_factory=list)
    attachments: list[AttachmentRecord] = field(default_factory=list)
    missing: list[MissingRecord] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    seconds: float = 0.0
    tree: Any = None
    stopped: bool = False
    #: (path, member) of the errors listed: a file reached twice (two paths given) is listed once.
    _failed: set[tuple[str, str | None]] = field(default_factory=set, init=False, repr=False, compare=False)

    def add_error(self, error: ErrorRecord) -> None:
        """List ``error`` unless its file is listed already."""
        key = (error.path, error.member)
        if key not in self._failed:
            self._failed.add(key)
            self.errors.append(error)

    def merge(self, other: ImportReport) -> ImportReport:
        """Add ``other`` into this report (for imports of several sources); return self."""
        self.sources += other.sources
        known = {r.SOPInstanceUID for r in self.instances}
        again = [r for r in other.instances if r.SOPInstanceUID in known]
        self.instances += [r for r in other.instances if r.SOPInstanceUID not in known]
        self.added += other.added
        self.duplicates += other.duplicates + len(again)
        self.skipped += other.skipped
        self.images += other.images
        self.attachments += other.attachments
        self.missing += other.missing
        for error in other.errors:
            self.add_error(error)
        self.seconds += other.seconds
        self.stopped = self.stopped or other.stopped
        if other.tree is not None:
            if self.tree is None:
                self.tree = other.tree
            else:
                import pandas as pd

                self.tree = pd.concat([self.tree, other.tree], ignore_index=True)
        return self

    def counts(self) -> dict[str, int]:
        """Patients, studies, series and instances found, and the other counts."""
        return {
            "patients": len({r.PatientID for r in self.instances}),
            "studies": len({r.StudyInstanceUID for r in self.instances}),
            "series": len({r.SeriesInstanceUID for r in self.instances}),
            "instances": len(self.instances),
            "added": self.added,
            "duplicates": self.duplicates,
            "images": len(self.images),
            "attachments": len(self.attachments),
            "missing": len(self.missing),
            "errors": len(self.errors),
            "skipped": self.skipped,
        }

    def summary(self) -> str:
        """One line per count, for a terminal."""
        c = self.counts()
        lines = [
            f"{c['patients']} patients, {c['studies']} studies, {c['series']} series, "
            f"{c['instances']} instances ({c['added']} new, {c['duplicates']} duplicates)",
            f"{c['images']} images, {c['attachments']} attachments, {c['missing']} missing, "
            f"{c['errors']} errors, {c['skipped']} other files skipped",
        ]
        if self.stopped:
            lines.append("stopped before the end: import again to read the rest")
        for error in self.errors[:20]:
            lines.append(f"  error: {error.path}{'::' + error.member if error.member else ''}: "
                         f"{error.error}: {error.message}")
        if len(self.errors) > 20:
            lines.append(f"  ... and {len(self.errors) - 20} more errors")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON-ready data (the ``dicomnb get --json`` object)."""
        return {
            "counts": self.counts(),
            "stopped": self.stopped,
            "instances": [{**dataclasses.asdict(r), "overrides": dict(r.overrides)} for r in self.instances],
            "images": [dataclasses.asdict(r) for r in self.images],
            "attachments": [dataclasses.asdict(r) for r in self.attachments],
            "missing": [dataclasses.asdict(r) for r in self.missing],
            "errors": [dataclasses.asdict(r) for r in self.errors],
        }

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        import html

        return "<pre>" + html.escape(self.summary()) + "</pre>"
