"""Search criteria: periods at fixed dates, identifiers, JSON, and saved presets."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pytest

import dicomnb
from dicomnb.core.criteria import DEFAULT_RETURN_KEYS, Period, SearchCriteria, parse_date
from dicomnb.core.errors import ConfigError, CriteriaError, InputError
from dicomnb.core.presets import Presets

WEDNESDAY = datetime(2024, 2, 28, 15, 30)  # a Wednesday in a leap year
FIRST_OF_MONTH = datetime(2024, 3, 1, 0, 5)  # a Friday, the day after 29 February
D = date

EXPECTED = {
    WEDNESDAY: {
        "all": (None, None),
        "today": (D(2024, 2, 28), D(2024, 2, 28)),
        "yesterday": (D(2024, 2, 27), D(2024, 2, 27)),
        "day-before-yesterday": (D(2024, 2, 26), D(2024, 2, 26)),
        "this-week": (D(2024, 2, 26), D(2024, 2, 28)),
        "this-month": (D(2024, 2, 1), D(2024, 2, 28)),
        "this-year": (D(2024, 1, 1), D(2024, 2, 28)),
        "last-24-hours": (D(2024, 2, 27), D(2024, 2, 28)),
        "last-2-days": (D(2024, 2, 26), D(2024, 2, 28)),
        "last-3-days": (D(2024, 2, 25), D(2024, 2, 28)),
        "last-week": (D(2024, 2, 21), D(2024, 2, 28)),
        "last-2-weeks": (D(2024, 2, 14), D(2024, 2, 28)),
        "last-month": (D(2024, 1, 28), D(2024, 2, 28)),
        "last-3-months": (D(2023, 11, 28), D(2024, 2, 28)),
        "last-6-months": (D(2023, 8, 28), D(2024, 2, 28)),
        "last-year": (D(2023, 2, 28), D(2024, 2, 28)),
    },
    FIRST_OF_MONTH: {
        "all": (None, None),
        "today": (D(2024, 3, 1), D(2024, 3, 1)),
        "yesterday": (D(2024, 2, 29), D(2024, 2, 29)),
        "day-before-yesterday": (D(2024, 2, 28), D(2024, 2, 28)),
        "this-week": (D(2024, 2, 26), D(2024, 3, 1)),
        "this-month": (D(2024, 3, 1), D(2024, 3, 1)),
        "this-year": (D(2024, 1, 1), D(2024, 3, 1)),
        "last-24-hours": (D(2024, 2, 29), D(2024, 3, 1)),
        "last-2-days": (D(2024, 2, 28), D(2024, 3, 1)),
        "last-3-days": (D(2024, 2, 27), D(2024, 3, 1)),
        "last-week": (D(2024, 2, 23), D(2024, 3, 1)),
        "last-2-weeks": (D(2024, 2, 16), D(2024, 3, 1)),
        "last-month": (D(2024, 2, 1), D(2024, 3, 1)),
        "last-3-months": (D(2023, 12, 1), D(2024, 3, 1)),
        "last-6-months": (D(2023, 9, 1), D(2024, 3, 1)),
        "last-year": (D(2023, 3, 1), D(2024, 3, 1)),
    },
}


def test_every_period_is_tested() -> None:
    for table in EXPECTED.values():
        assert sorted(table) == sorted(p.value for p in Period)


@pytest.mark.parametrize("now", list(EXPECTED), ids=["wednesday", "first-of-month"])
@pytest.mark.parametrize("period", list(Period), ids=lambda p: p.value)
def test_period_date_range(now: datetime, period: Period) -> None:
    assert period.date_range(now) == EXPECTED[now][period.value]


@pytest.mark.parametrize(
    ("now", "period", "first"),
    [
        (datetime(2024, 3, 31), Period.LAST_MONTH, D(2024, 2, 29)),       # clamped to a leap day
        (datetime(2023, 3, 31), Period.LAST_MONTH, D(2023, 2, 28)),
        (datetime(2024, 2, 29), Period.LAST_YEAR, D(2023, 2, 28)),        # no 29 February in 2023
        (datetime(2024, 5, 31), Period.LAST_3_MONTHS, D(2024, 2, 29)),
        (datetime(2024, 1, 15), Period.LAST_MONTH, D(2023, 12, 15)),      # across the year
        (datetime(2024, 3, 4), Period.THIS_WEEK, D(2024, 3, 4)),          # a Monday
        (datetime(2024, 3, 10), Period.THIS_WEEK, D(2024, 3, 4)),         # a Sunday
        (datetime(2025, 1, 1), Period.LAST_2_DAYS, D(2024, 12, 30)),
    ],
)
def test_period_edges(now: datetime, period: Period, first: date) -> None:
    assert period.date_range(now) == (first, now.date())


def test_last_24_hours_exact_window_and_labels() -> None:
    assert Period.LAST_24_HOURS.datetime_range(WEDNESDAY) == (datetime(2024, 2, 27, 15, 30), WEDNESDAY)
    first, last = Period.TODAY.datetime_range(WEDNESDAY)
    assert first == datetime(2024, 2, 28) and last is not None and last.date() == D(2024, 2, 28)
    assert Period.ALL.datetime_range(WEDNESDAY) == (None, None)
    assert Period.LAST_2_WEEKS.label == "Last 2 weeks"
    assert Period.parse("LAST_WEEK") is Period.parse("last week") is Period.LAST_WEEK
    with pytest.raises(CriteriaError, match="choose one of all, today"):
        Period.parse("fortnight")


def test_period_defaults_to_now() -> None:
    assert Period.TODAY.date_range() == (date.today(), date.today())


def test_identifier_of_empty_criteria_asks_everything_back() -> None:
    criteria = SearchCriteria()
    identifier = criteria.identifier(WEDNESDAY)
    assert identifier["QueryRetrieveLevel"] == "STUDY"
    assert identifier["SpecificCharacterSet"] == "ISO_IR 192"
    assert all(identifier[key] == "" for key in DEFAULT_RETURN_KEYS)
    assert criteria.matching_keys(WEDNESDAY) == {} and criteria.is_empty()


def test_identifier_keeps_wildcards_and_multi_valued_modalities() -> None:
    criteria = SearchCriteria(
        patient_name="Люкc*", patient_id="SCS?RUSS", accession_number="A1*", study_id="7",
        study_description="*head*", study_instance_uid="1.2.3\\1.2.4", referring_physician_name="Doe^J*",
        performing_physician_name="Smith*", name_of_physicians_reading_study="Wu*",
        modalities=("ct", "MR", "CT"), date_from="2024-01-01", date_to="20240131",
    )
    assert criteria.matching_keys(WEDNESDAY) == {
        "PatientName": "Люкc*", "PatientID": "SCS?RUSS", "AccessionNumber": "A1*", "StudyID": "7",
        "StudyDescription": "*head*", "StudyInstanceUID": "1.2.3\\1.2.4",
        "ReferringPhysicianName": "Doe^J*", "PerformingPhysicianName": "Smith*",
        "NameOfPhysiciansReadingStudy": "Wu*", "StudyDate": "20240101-20240131",
        "ModalitiesInStudy": ["CT", "MR"],
    }
    identifier = criteria.identifier(WEDNESDAY, return_keys=("PatientName", "StudyTime"))
    assert identifier["PatientName"] == "Люкc*" and identifier["StudyTime"] == ""
    assert "PatientSex" not in identifier and not criteria.is_empty()


@pytest.mark.parametrize(
    ("kwargs", "study_date"),
    [
        ({"date_from": "2024-01-01", "date_to": "2024-01-31"}, "20240101-20240131"),
        ({"date_from": "2024-01-01"}, "20240101-"),
        ({"date_to": D(2024, 1, 31)}, "-20240131"),
        ({"date_from": "2024-02-29", "date_to": "2024-02-29"}, "20240229"),
        ({}, ""),
        ({"period": "today"}, "20240228"),
        ({"period": Period.LAST_WEEK}, "20240221-20240228"),
        ({"period": "last-24-hours"}, "20240227-20240228"),
        ({"period": "all"}, ""),
    ],
)
def test_study_date_ranges(kwargs: dict[str, object], study_date: str) -> None:
    criteria = SearchCriteria(**kwargs)  # type: ignore[arg-type]
    assert criteria.study_date(WEDNESDAY) == study_date
    assert criteria.identifier(WEDNESDAY)["StudyDate"] == study_date


def test_period_is_recomputed_at_query_time() -> None:
    criteria = SearchCriteria(period="yesterday")  # type: ignore[arg-type]
    assert criteria.study_date(WEDNESDAY) == "20240227"
    assert criteria.study_date(FIRST_OF_MONTH) == "20240229"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"date_from": "2024-02-30"}, "not a calendar date: type it as YYYY-MM-DD"),
        ({"date_to": "31/01/2024"}, "end date '31/01/2024' is not a calendar date"),
        ({"date_from": "2024-02-01", "date_to": "2024-01-01"}, "after the end date 2024-01-01: swap them"),
        ({"period": "today", "date_from": "2024-01-01"}, "either a period or a date range"),
        ({"period": "soon"}, "unknown period"),
        ({"modalities": ("C T!",)}, "not a DICOM modality"),
        ({"patient_name": "A\\B"}, "backslash"),
        ({"patient_id": "x\ny"}, "control"),
        ({"specific_character_set": " "}, "ISO_IR 192"),
    ],
)
def test_bad_criteria_are_typed_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(CriteriaError, match=message) as info:
        SearchCriteria(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, InputError)


def test_parse_date_and_modality_text() -> None:
    assert parse_date("") is None and parse_date(datetime(2024, 1, 2, 3)) == D(2024, 1, 2)
    assert SearchCriteria(modalities="ct, MR\\us").modalities == ("CT", "MR", "US")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "criteria",
    [
        SearchCriteria(),
        SearchCriteria(patient_name="김희중", modalities=("CR",), period=Period.LAST_3_MONTHS),
        SearchCriteria(patient_id="SCS*", date_from=D(2024, 1, 1), specific_character_set="ISO_IR 100"),
        SearchCriteria(study_instance_uid="1.2\\1.3", date_to=D(2024, 12, 31)),
    ],
)
def test_json_round_trip(criteria: SearchCriteria) -> None:
    text = json.dumps(criteria.to_json(), ensure_ascii=False)
    assert SearchCriteria.from_json(json.loads(text)) == criteria


def test_json_keeps_a_period_by_name_and_dates_as_dates() -> None:
    assert SearchCriteria(period=Period.LAST_WEEK).to_json()["period"] == "last-week"
    value = SearchCriteria(date_from=D(2024, 1, 1)).to_json()
    assert value["date_from"] == "2024-01-01" and value["period"] is None and value["date_to"] is None
    assert SearchCriteria.from_json({"modalities": ["ct"]}) == SearchCriteria(modalities=("CT",))
    with pytest.raises(CriteriaError, match="unknown search field"):
        SearchCriteria.from_json({"patient": "x"})


def test_replace_validates_again() -> None:
    criteria = SearchCriteria(date_to="2024-01-01")  # type: ignore[arg-type]
    with pytest.raises(CriteriaError, match="swap them"):
        criteria.replace(date_from="2024-06-01")


# --- presets ------------------------------------------------------------------------------------

def test_built_in_presets(isolated_config: Path) -> None:
    presets = Presets.load()
    assert presets.names() == ["Empty", "Today"]
    assert presets.get("Empty") == SearchCriteria()
    assert presets.get("Today") == SearchCriteria(period=Period.TODAY)
    assert presets.current() == SearchCriteria() and presets.last_chosen == "Empty"
    for name in ["Empty", "Today"]:
        with pytest.raises(ConfigError, match="built-in preset and cannot be deleted"):
            presets.delete(name)
        with pytest.raises(ConfigError, match="cannot be replaced"):
            presets.save(name, SearchCriteria(patient_id="x"))
    assert not (isolated_config / "presets.json").exists()


def test_presets_save_delete_and_errors(isolated_config: Path) -> None:
    presets = Presets.load()
    ct_week = SearchCriteria(modalities=("CT",), period=Period.LAST_WEEK)
    january = SearchCriteria(patient_name="Doe*", date_from=D(2024, 1, 1), date_to=D(2024, 1, 31))
    presets.save("CT last week", ct_week)
    presets.save("January", january)
    saved = json.loads((isolated_config / "presets.json").read_text())
    assert saved["presets"]["CT last week"]["period"] == "last-week"
    assert saved["presets"]["CT last week"]["date_from"] is None
    assert saved["presets"]["January"]["date_from"] == "2024-01-01"
    again = Presets.load()
    assert again.names() == ["Empty", "Today", "CT last week", "January"]
    assert again.get("CT last week") == ct_week and again.get("January") == january
    again.delete("January")
    assert Presets.load().names() == ["Empty", "Today", "CT last week"]
    with pytest.raises(ConfigError, match=r"no preset named 'January' \(presets: Empty, Today, CT last week\)"):
        again.get("January")
    with pytest.raises(ConfigError, match="no preset named"):
        again.delete("January")
    with pytest.raises(ConfigError, match="needs a name"):
        again.save("  ", ct_week)


def test_last_chosen_survives_a_new_process(isolated_config: Path) -> None:
    presets = dicomnb.presets()
    presets.save("Russian", SearchCriteria(patient_name="Люкc*", period="last-year"))  # type: ignore[arg-type]
    assert presets.choose("Russian").patient_name == "Люкc*"
    code = ("import dicomnb; p = dicomnb.presets(); c = p.current();"
            "print(p.last_chosen, c.patient_name, c.period.value)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            encoding="utf-8")
    assert result.stdout.split() == ["Russian", "Люкc*", "last-year"]
    assert Presets.load().current() == presets.get("Russian")
    presets.choose("Today")
    assert Presets.load().last_chosen == "Today"


def test_deleting_the_chosen_preset_falls_back_to_empty() -> None:
    presets = Presets.load()
    presets.save("mine", SearchCriteria(patient_id="1"))
    presets.choose("mine")
    presets.delete("mine")
    assert Presets.load().last_chosen == "Empty" and Presets.load().current().is_empty()


def test_corrupt_presets_file_names_it(isolated_config: Path) -> None:
    path = isolated_config / "presets.json"
    path.write_text('{"presets": {"bad": {"date_from": "tomorrow"}}}')
    with pytest.raises(ConfigError, match=str(path)):
        Presets.load()
    path.write_text("{oops")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Presets.load()
