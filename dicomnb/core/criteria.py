"""Search criteria: what the user asks an archive for, as plain data.

One model serves every query protocol: :meth:`SearchCriteria.identifier` gives the DICOM
attributes of a STUDY-level C-FIND identifier (keyword → value), and the same fields map to
QIDO-RS query parameters. Nothing here talks to the network.

The fields are those of a DICOM viewer's query dialog: nine text fields matched with
``*``/``?`` wildcards exactly as typed, the modalities (ModalitiesInStudy), and a study date
given either as an explicit range (from/to, either end open) or as a named :class:`Period`
recomputed at query time, so a saved "last week" always means the week before *now*.

About ``last-24-hours``: the identifier carries the date range yesterday–today and no
StudyTime. Sending a StudyTime range as well would only work with servers that negotiated
combined date-time matching (an extended negotiation few archives offer); the others match
date and time independently, which would drop studies of yesterday afternoon. The exact
window is available from :meth:`Period.datetime_range` to filter the results afterwards.
"""

from __future__ import annotations

import calendar
import dataclasses
import enum
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from dicomnb.core.errors import CriteriaError

__all__ = ["DEFAULT_RETURN_KEYS", "TEXT_FIELDS", "Period", "SearchCriteria", "parse_date"]


def _months_back(day: date, months: int) -> date:
    """``day`` moved back by ``months`` calendar months, clamped to the month's last day."""
    month_index = day.year * 12 + (day.month - 1) - months
    year, month = divmod(month_index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


class Period(enum.Enum):
    """A named study-date period, recomputed at query time (values as the CLI spells them).

    Weeks start on Monday (ISO 8601). "Last N ..." periods run from the same day N units
    ago up to today, both ends included; months and years are calendar units clamped to
    the end of a shorter month (31 March → 28/29 February).
    """

    ALL = "all"
    TODAY = "today"
    YESTERDAY = "yesterday"
    DAY_BEFORE_YESTERDAY = "day-before-yesterday"
    THIS_WEEK = "this-week"
    THIS_MONTH = "this-month"
    THIS_YEAR = "this-year"
    LAST_24_HOURS = "last-24-hours"
    LAST_2_DAYS = "last-2-days"
    LAST_3_DAYS = "last-3-days"
    LAST_WEEK = "last-week"
    LAST_2_WEEKS = "last-2-weeks"
    LAST_MONTH = "last-month"
    LAST_3_MONTHS = "last-3-months"
    LAST_6_MONTHS = "last-6-months"
    LAST_YEAR = "last-year"

    @classmethod
    def parse(cls, value: Period | str) -> Period:
        """The period named ``value`` (``"last-week"``, ``"LAST_WEEK"`` or ``"last week"``)."""
        if isinstance(value, Period):
            return value
        text = str(value).strip().lower().replace("_", "-").replace(" ", "-")
        try:
            return cls(text)
        except ValueError:
            names = ", ".join(p.value for p in cls)
            raise CriteriaError(f"unknown period {value!r}: choose one of {names}") from None

    @property
    def label(self) -> str:
        """The period in words, as a dialog shows it ("Last 2 weeks")."""
        return self.value.replace("-", " ").capitalize()

    def date_range(self, now: datetime | None = None) -> tuple[date | None, date | None]:
        """The study dates this period covers at ``now`` (default: the local time now).

        Returns
        -------
        (date or None, date or None)
            First and last day, both included; ``(None, None)`` for :attr:`ALL`.
        """
        today = (now or datetime.now()).date()
        days_back = {
            Period.TODAY: 0, Period.LAST_24_HOURS: 1, Period.LAST_2_DAYS: 2,
            Period.LAST_3_DAYS: 3, Period.LAST_WEEK: 7, Period.LAST_2_WEEKS: 14,
        }
        months_back = {Period.LAST_MONTH: 1, Period.LAST_3_MONTHS: 3, Period.LAST_6_MONTHS: 6,
                       Period.LAST_YEAR: 12}
        if self is Period.ALL:
            return None, None
        if self is Period.YESTERDAY:
            day = today - timedelta(days=1)
            return day, day
        if self is Period.DAY_BEFORE_YESTERDAY:
            day = today - timedelta(days=2)
            return day, day
        if self is Period.THIS_WEEK:
            return today - timedelta(days=today.weekday()), today
        if self is Period.THIS_MONTH:
            return today.replace(day=1), today
        if self is Period.THIS_YEAR:
            return today.replace(month=1, day=1), today
        if self in days_back:
            return today - timedelta(days=days_back[self]), today
        return _months_back(today, months_back[self]), today

    def datetime_range(self, now: datetime | None = None) -> tuple[datetime | None, datetime | None]:
        """The exact window: ``now - 24 h`` to ``now`` for :attr:`LAST_24_HOURS`, else whole days."""
        now = now or datetime.now()
        if self is Period.LAST_24_HOURS:
            return now - timedelta(hours=24), now
        first, last = self.date_range(now)
        return (
            datetime.combine(first, datetime.min.time()) if first else None,
            datetime.combine(last, datetime.max.time()) if last else None,
        )


#: The nine text fields (attribute name → DICOM keyword).
TEXT_FIELDS: dict[str, str] = {
    "patient_name": "PatientName",
    "patient_id": "PatientID",
    "accession_number": "AccessionNumber",
    "study_id": "StudyID",
    "study_description": "StudyDescription",
    "study_instance_uid": "StudyInstanceUID",
    "referring_physician_name": "ReferringPhysicianName",
    "performing_physician_name": "PerformingPhysicianName",
    "name_of_physicians_reading_study": "NameOfPhysiciansReadingStudy",
}

#: Attributes asked back (universal matching) in a STUDY-level identifier.
DEFAULT_RETURN_KEYS: tuple[str, ...] = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "AccessionNumber", "StudyID", "StudyDescription", "StudyInstanceUID",
    "ReferringPhysicianName", "ModalitiesInStudy",
)

_DATE_FORMATS = (re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"), re.compile(r"^(\d{4})(\d{2})(\d{2})$"))
_MODALITY = re.compile(r"^[A-Z0-9_ ]{1,16}$")


def parse_date(value: date | str | None, what: str = "date") -> date | None:
    """A date from ``YYYY-MM-DD`` or ``YYYYMMDD`` text (or a date); empty means open.

    Raises
    ------
    CriteriaError
        The text is no calendar date; the message says how to type it.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if not text:
        return None
    for pattern in _DATE_FORMATS:
        match = pattern.match(text)
        if match:
            try:
                return date(*map(int, match.groups()))
            except ValueError:
                break
    raise CriteriaError(
        f"the {what} {value!r} is not a calendar date: type it as YYYY-MM-DD (e.g. 2024-02-29) "
        "or leave it empty for an open end"
    )


def _dicom_date(day: date | None) -> str:
    return day.strftime("%Y%m%d") if day else ""


@dataclass(frozen=True)
class SearchCriteria:
    """What to search an archive for (every field optional; empty matches everything).

    Parameters
    ----------
    patient_name, patient_id, accession_number, study_id, study_description, \
study_instance_uid, referring_physician_name, performing_physician_name, \
name_of_physicians_reading_study : str
        Matched as typed: ``*`` stands for any run of characters, ``?`` for one.
        ``study_instance_uid`` may list several UIDs separated by ``\\``.
    modalities : tuple of str
        Modalities in the study (``("CT", "MR")``): any of them matches.
    date_from, date_to : date or str, optional
        Study date range, both ends included, either end open; text as ``YYYY-MM-DD``.
    period : Period or str, optional
        A named period instead of dates, recomputed at query time.
    specific_character_set : str
        The character set of the query, so non-ASCII names match (default UTF-8).

    Raises
    ------
    CriteriaError
        A bad date, ``date_from`` after ``date_to``, dates together with a period, a bad
        modality, or a backslash inside a text field.
    """

    patient_name: str = ""
    patient_id: str = ""
    accession_number: str = ""
    study_id: str = ""
    study_description: str = ""
    study_instance_uid: str = ""
    referring_physician_name: str = ""
    performing_physician_name: str = ""
    name_of_physicians_reading_study: str = ""
    modalities: tuple[str, ...] = ()
    date_from: date | None = None
    date_to: date | None = None
    period: Period | None = None
    specific_character_set: str = "ISO_IR 192"

    def __post_init__(self) -> None:
        for field in TEXT_FIELDS:
            value = getattr(self, field)
            if value is None:
                value = ""
            if not isinstance(value, str):
                raise CriteriaError(f"{field} must be text, not {type(value).__name__}")
            value = value.strip()
            if "\\" in value and field != "study_instance_uid":
                raise CriteriaError(f"{field} {value!r} contains a backslash, which DICOM reads as "
                                    "a value separator: remove it")
            if any(ord(c) < 0x20 for c in value):
                raise CriteriaError(f"{field} {value!r} contains a control character")
            object.__setattr__(self, field, value)
        modalities = self.modalities
        if isinstance(modalities, str):
            modalities = tuple(re.split(r"[\s,\\]+", modalities))
        cleaned = tuple(dict.fromkeys(m.strip().upper() for m in modalities if m and m.strip()))
        for modality in cleaned:
            if not _MODALITY.match(modality):
                raise CriteriaError(f"the modality {modality!r} is not a DICOM modality code "
                                    "(such as CT, MR, US: letters and digits, 16 at most)")
        object.__setattr__(self, "modalities", cleaned)
        object.__setattr__(self, "date_from", parse_date(self.date_from, "start date"))
        object.__setattr__(self, "date_to", parse_date(self.date_to, "end date"))
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise CriteriaError(
                f"the start date {self.date_from.isoformat()} is after the end date "
                f"{self.date_to.isoformat()}: swap them"
            )
        if self.period is not None:
            object.__setattr__(self, "period", Period.parse(self.period))
            if self.date_from or self.date_to:
                raise CriteriaError("give either a period or a date range, not both")
        charset = (self.specific_character_set or "").strip()
        if not charset:
            raise CriteriaError("the specific character set is blank: use ISO_IR 192 (UTF-8)")
        object.__setattr__(self, "specific_character_set", charset)

    def replace(self, **changes: Any) -> SearchCriteria:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def date_range(self, now: datetime | None = None) -> tuple[date | None, date | None]:
        """The study date range to query at ``now``: the period's, else the explicit dates."""
        if self.period is not None:
            return self.period.date_range(now)
        return self.date_from, self.date_to

    def study_date(self, now: datetime | None = None) -> str:
        """StudyDate as a DICOM range: ``A-B``, ``-B``, ``A-``, ``A`` (one day) or ``""``."""
        first, last = self.date_range(now)
        if first and last and first == last:
            return _dicom_date(first)
        if not first and not last:
            return ""
        return f"{_dicom_date(first)}-{_dicom_date(last)}"

    def matching_keys(self, now: datetime | None = None) -> dict[str, str | list[str]]:
        """Only the attributes that constrain the search (keyword → value)."""
        keys: dict[str, str | list[str]] = {}
        for field, keyword in TEXT_FIELDS.items():
            value = getattr(self, field)
            if value:
                keys[keyword] = value
        study_date = self.study_date(now)
        if study_date:
            keys["StudyDate"] = study_date
        if self.modalities:
            keys["ModalitiesInStudy"] = list(self.modalities)
        return keys

    def identifier(
        self, now: datetime | None = None, return_keys: tuple[str, ...] = DEFAULT_RETURN_KEYS
    ) -> dict[str, str | list[str]]:
        """The attributes of a STUDY-level C-FIND identifier (keyword → value).

        Includes ``QueryRetrieveLevel``, ``SpecificCharacterSet``, every matching key, and
        ``return_keys`` with universal matching (empty). Multi-valued ModalitiesInStudy is
        a list. Turning this into a pydicom Dataset is the source's job.
        """
        keys: dict[str, str | list[str]] = {
            "QueryRetrieveLevel": "STUDY",
            "SpecificCharacterSet": self.specific_character_set,
        }
        keys.update({keyword: "" for keyword in return_keys})
        keys.update(self.matching_keys(now))
        return keys

    def is_empty(self) -> bool:
        """True when nothing constrains the search (the "Empty" preset)."""
        return not self.matching_keys(datetime(2000, 1, 1))

    def to_json(self) -> dict[str, Any]:
        """The criteria as a JSON object; a period is kept by name, dates as ``YYYY-MM-DD``."""
        value: dict[str, Any] = {field: getattr(self, field) for field in TEXT_FIELDS}
        value["modalities"] = list(self.modalities)
        value["date_from"] = self.date_from.isoformat() if self.date_from else None
        value["date_to"] = self.date_to.isoformat() if self.date_to else None
        value["period"] = self.period.value if self.period else None
        value["specific_character_set"] = self.specific_character_set
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> SearchCriteria:
        """Criteria from :meth:`to_json`'s output; missing keys take their defaults."""
        if not isinstance(value, dict):
            raise CriteriaError(f"search criteria must be a JSON object, not {type(value).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise CriteriaError(f"unknown search field(s): {', '.join(unknown)}")
        data = dict(value)
        if "modalities" in data:
            modalities = data["modalities"]
            data["modalities"] = (tuple(modalities) if isinstance(modalities, (list, tuple))
                                  else modalities)
        return cls(**data)
