"""What a query of an archive gives back: the rows, and how the query ended.

Queries stream (a source yields one row per match, see :func:`dicomnb.sources.dimse.find`);
:class:`QueryResult` gathers them at the edge, for a notebook (``.frame``, an HTML view)
and for the command line (``.message``, :meth:`QueryResult.to_json`). Nothing here talks to
the network.

A row is a plain ``dict``: DICOM keyword → Python value (``str``, ``int``, ``float``, a
``list`` for multi-valued attributes such as ModalitiesInStudy, ``None`` when the archive
returned the attribute empty). Attributes the archive did not return at all are absent.

The columns asked for at each level are :data:`STUDY_COLUMNS`, :data:`SERIES_COLUMNS` and
:data:`IMAGE_COLUMNS`; ``.frame`` shows them first, in that order, whether or not the
archive returned them, so frames of the same level always line up.

About pages: a result knows its ``page`` (1-based; page N holds the rows from offset
``(N - 1) × limit``) so that sources that can skip matches (QIDO-RS ``offset``) fill it.
C-FIND has no offset: over DIMSE a result is always page 1.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from dicomnb.core.criteria import SearchCriteria, parse_date
from dicomnb.core.errors import CriteriaError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COLUMNS",
    "COUNT_COLUMNS",
    "IMAGE_COLUMNS",
    "LEVELS",
    "LIST_COLUMNS",
    "SERIES_COLUMNS",
    "STUDY_COLUMNS",
    "FindOutcome",
    "QueryResult",
    "check_level",
    "check_limit",
    "check_page",
    "find_identifier",
    "parse_date_range",
]

#: Attributes asked back at STUDY level (what a viewer's result table shows).
STUDY_COLUMNS: tuple[str, ...] = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ModalitiesInStudy", "StudyDescription", "AccessionNumber", "StudyID",
    "ReferringPhysicianName", "InstitutionName", "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances", "StudyInstanceUID",
)

#: Attributes asked back at SERIES level (StudyInstanceUID is the unique key above).
SERIES_COLUMNS: tuple[str, ...] = (
    "SeriesNumber", "Modality", "SeriesDescription", "SeriesDate", "SeriesTime",
    "BodyPartExamined", "NumberOfSeriesRelatedInstances", "SeriesInstanceUID",
    "StudyInstanceUID",
)

#: Attributes asked back at IMAGE level (Study and Series Instance UIDs are the keys above).
IMAGE_COLUMNS: tuple[str, ...] = (
    "InstanceNumber", "SOPClassUID", "Rows", "Columns", "NumberOfFrames", "ContentDate",
    "ContentTime", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID",
)

#: The query levels (as dicomnb spells them) → QueryRetrieveLevel.
LEVELS: dict[str, str] = {"study": "STUDY", "series": "SERIES", "image": "IMAGE"}

#: Columns of each level.
COLUMNS: dict[str, tuple[str, ...]] = {
    "study": STUDY_COLUMNS, "series": SERIES_COLUMNS, "image": IMAGE_COLUMNS,
}

#: Integer columns (shown as pandas' nullable ``Int64``).
COUNT_COLUMNS: frozenset[str] = frozenset({
    "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "NumberOfSeriesRelatedInstances",
    "NumberOfPatientRelatedStudies", "SeriesNumber", "InstanceNumber", "NumberOfFrames", "Rows",
    "Columns",
})

#: Columns whose value is always a list in a row (joined with ``\\`` in ``.frame``).
LIST_COLUMNS: frozenset[str] = frozenset({"ModalitiesInStudy", "SOPClassesInStudy"})

_PLURAL = {"study": "studies", "series": "series", "image": "instances"}
_SINGULAR = {"study": "study", "series": "series", "image": "instance"}


def check_level(level: str) -> str:
    """``level`` as dicomnb spells it (``"study"``, ``"series"``, ``"image"``).

    Raises
    ------
    CriteriaError
        Not a Study Root level (PATIENT is not one: strict archives refuse it).
    """
    text = str(level).strip().lower()
    if text == "instance":
        text = "image"
    if text not in LEVELS:
        raise CriteriaError(f"unknown query level {level!r}: choose study, series or image")
    return text


def check_limit(limit: object, what: str = "limit") -> int:
    """``limit`` as a count of matches (0: no limit); ``what`` names it in errors ("offset").

    Raises
    ------
    CriteriaError
        Not a whole number, or negative.
    """
    if isinstance(limit, bool) or not isinstance(limit, int):
        try:
            limit = int(str(limit), 10)
        except ValueError:
            raise CriteriaError(f"the {what} {limit!r} is not a whole number: give 0 (none) or more") from None
    if limit < 0:
        raise CriteriaError(f"the {what} {limit} is negative: give 0 (none) or more")
    return limit


def check_page(page: object, limit: int) -> int:
    """``page`` as a 1-based int; pages beyond the first need a limit (the page size).

    Raises
    ------
    CriteriaError
        Not a whole number >= 1, or beyond the first with no limit.
    """
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise CriteriaError(f"the page must be a whole number >= 1, not {page!r}")
    if page > 1 and limit == 0:
        raise CriteriaError(f"page {page} needs a limit (the page size): with no limit everything is on page 1")
    return page


def find_identifier(
    criteria: SearchCriteria | None = None,
    level: str = "study",
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The C-FIND identifier (keyword → value) of a Study Root query at ``level``.

    Empty values ask the attribute back (universal matching). What a strict archive
    accepts decides the shape: at STUDY level the criteria's matching keys and
    :data:`STUDY_COLUMNS`; at SERIES level the study's UID (required) and
    :data:`SERIES_COLUMNS`; at IMAGE level the study's UID (required), the series' UID
    (universal when not given: accepted by Orthanc, dcmqrscp and qrscp; an archive that
    wants it can be queried series by series, as ``find_instances`` does) and
    :data:`IMAGE_COLUMNS`. Below STUDY level only the modality of the criteria is used
    (sent as Modality when there is one, filtered on by the source).

    Raises
    ------
    CriteriaError
        Unknown level, or a SERIES/IMAGE query without ``study_uid``.
    """
    level = check_level(level)
    criteria = criteria or SearchCriteria()
    if level == "study":
        identifier: dict[str, Any] = dict(criteria.identifier(now, STUDY_COLUMNS))
        if study_uid:
            identifier["StudyInstanceUID"] = study_uid.strip()
        return identifier
    if not study_uid or not str(study_uid).strip():
        option = "--study UID" if level == "series" else "--study UID (and --series UID)"
        raise CriteriaError(
            f"a {LEVELS[level]} query needs the StudyInstanceUID of its study (strict archives "
            f"refuse one without it): give study_uid=... ({option} on the command line)"
        )
    identifier = {"QueryRetrieveLevel": LEVELS[level],
                  "SpecificCharacterSet": criteria.specific_character_set}
    identifier.update(dict.fromkeys(COLUMNS[level], ""))
    identifier["StudyInstanceUID"] = str(study_uid).strip()
    if series_uid:
        identifier["SeriesInstanceUID"] = str(series_uid).strip()
    if level == "series" and len(criteria.modalities) == 1:
        identifier["Modality"] = criteria.modalities[0]
    return identifier


_RANGE = re.compile(r"^(\d{8})?-(\d{8})?$")


def parse_date_range(text: str) -> tuple[date | None, date | None]:
    """A study date range typed on the command line.

    Accepts ``YYYYMMDD-YYYYMMDD`` (the DICOM form), ``YYYY-MM-DD..YYYY-MM-DD``, either end
    left open (``20240101-``, ``..2024-01-31``), or one date (that day only).

    Raises
    ------
    CriteriaError
        The text is none of these forms or holds no calendar date.
    """
    value = text.strip()
    if ".." in value:
        first, _, last = value.partition("..")
    elif _RANGE.match(value):
        first, _, last = value.partition("-")
    else:
        try:
            day = parse_date(value, "date")
        except CriteriaError:
            raise CriteriaError(
                f"the date range {text!r} is not understood: type FROM-TO as YYYYMMDD-YYYYMMDD "
                "or YYYY-MM-DD..YYYY-MM-DD (leave an end empty to keep it open)"
            ) from None
        return day, day
    start, end = parse_date(first, "start date"), parse_date(last, "end date")
    if start is None and end is None:
        raise CriteriaError(f"the date range {text!r} has neither a start nor an end")
    return start, end


@dataclass(frozen=True)
class FindOutcome:
    """How a streamed query ended (the return value of a source's ``find`` generator).

    Attributes
    ----------
    matches : int
        Rows yielded.
    limited : bool
        The limit was reached while the archive still had matches (it was sent a cancel).
    cancelled : bool
        The query was cancelled by the caller before the archive was done.
    status : int or None
        The final status of the archive (``0x0000``, ``0xFE00``), None if it never came.
    notes : tuple of str
        Things the user should know about how the query was answered.
    """

    matches: int = 0
    limited: bool = False
    cancelled: bool = False
    status: int | None = None
    notes: tuple[str, ...] = ()


@dataclass
class QueryResult:
    """The rows of one query, and how it ended.

    Attributes
    ----------
    rows : list of dict
        One dict per match, DICOM keyword → value.
    level : str
        ``"study"``, ``"series"`` or ``"image"``.
    node : str
        The name of the archive asked.
    limit : int
        The limit asked for (0: none).
    limited : bool
        The archive had more matches than ``limit``: it was stopped after ``limit``.
    cancelled : bool
        The query was cancelled; ``rows`` holds what had arrived.
    seconds : float
        From sending the query to its end.
    page : int
        Which page of ``limit`` rows this is (1-based; always 1 over DIMSE).
    notes : list of str
        Things the user should know about how the query was answered.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    level: str = "study"
    node: str = ""
    limit: int = 0
    limited: bool = False
    cancelled: bool = False
    seconds: float = 0.0
    page: int = 1
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    @property
    def columns(self) -> tuple[str, ...]:
        """The level's columns, then any other attribute found in the rows."""
        first = COLUMNS.get(self.level, ())
        others = dict.fromkeys(k for row in self.rows for k in row if k not in first)
        return (*first, *others)

    @property
    def message(self) -> str:
        """One line saying what came back ("stopped after 2 studies (limit 2) ...")."""
        count = len(self.rows)
        noun = _PLURAL.get(self.level, "rows") if count != 1 else _SINGULAR.get(self.level, "row")
        where = f" from {self.node}" if self.node else ""
        took = f" in {self.seconds:.2f} s"
        if self.cancelled:
            text = f"cancelled: {count} {noun}{where} had arrived{took}"
        elif self.limited:
            limited = _PLURAL.get(self.level, "rows") if self.limit != 1 else _SINGULAR.get(self.level, "row")
            text = (f"stopped after {self.limit} {limited} (the limit){where}{took}: "
                    "narrow the search, raise the limit or see the next page for more")
        else:
            text = f"{count} {noun}{where}{took}"
        return "; ".join([text, *self.notes])

    @property
    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame: the level's columns first, counts as ``Int64``."""
        import pandas as pd

        columns = list(self.columns)
        records = [[_cell(name, row.get(name)) for name in columns] for row in self.rows]
        df = pd.DataFrame.from_records(records, columns=columns)
        for name in columns:
            if name in COUNT_COLUMNS:
                df[name] = pd.to_numeric(df[name], errors="coerce").astype("Int64")
        return df

    def to_json(self) -> dict[str, Any]:
        """The result as JSON-ready data: ``{"rows": [...], "level": ..., "message": ...}``."""
        return {
            "rows": self.rows, "level": self.level, "node": self.node, "count": len(self.rows),
            "limit": self.limit, "limited": self.limited, "cancelled": self.cancelled,
            "page": self.page, "seconds": round(self.seconds, 3), "message": self.message,
            "notes": list(self.notes),
        }

    def __repr__(self) -> str:
        return f"<QueryResult {self.level} level, {len(self.rows)} rows: {self.message}>"

    def _repr_html_(self) -> str:
        table = self.frame.to_html(index=False, na_rep="", max_rows=200)
        return f"<p>{html.escape(self.message)}</p>{table}"


def _cell(name: str, value: Any) -> Any:
    if isinstance(value, list):
        return "\\".join(str(v) for v in value if v is not None)
    return value
