"""The header scanner gives pydicom's values on every bundled file, and finds truncation."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pydicom
import pytest
from conftest import CHARSET_FILES, TEST_FILES

from dicomnb.core import scan
from dicomnb.core.errors import NotDicomError, TruncatedFileError, UnreadableFileError
from dicomnb.core.scan import fields_from_dataset, read_header, read_header_bytes

ALL_FILES = sorted(p for p in [*TEST_FILES.rglob("*"), *CHARSET_FILES.glob("*")] if p.is_file())

# Files the scanner hands to pydicom on purpose: big endian, deflated, and a dataset
# encoded differently from what its transfer syntax says.
EXPECTED_FALLBACKS = {
    "ExplVR_BigEnd.dcm", "ExplVR_BigEndNoMeta.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm",
    "SC_rgb_small_odd_big_endian.dcm", "image_dfl.dcm", "liver_expb_1frame.dcm",
    "rtdose_expb.dcm", "rtdose_expb_1frame.dcm", "SC_rgb_jpeg.dcm",
}
TRUNCATED = {"MR_truncated.dcm", "rtplan_truncated.dcm"}


def _pydicom_fields(path: Path) -> dict | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        except Exception:  # noqa: BLE001 - pydicom cannot read it either
            return None
    fields = fields_from_dataset(ds)
    return fields if fields["SOPInstanceUID"] else None


@pytest.fixture
def fallbacks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = scan._read_with_pydicom

    def spy(open_file, preamble):  # type: ignore[no-untyped-def]
        calls.append("fallback")
        return original(open_file, preamble)

    monkeypatch.setattr(scan, "_read_with_pydicom", spy)
    return calls


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_same_values_as_pydicom(path: Path, fallbacks: list[str]) -> None:
    expected = _pydicom_fields(path)
    if path.name in TRUNCATED:
        with pytest.raises(TruncatedFileError):
            read_header(path)
        return
    if expected is None:
        with pytest.raises((NotDicomError, UnreadableFileError)):
            read_header(path)
        return
    assert read_header(path) == expected
    assert read_header_bytes(path.read_bytes()) == expected
    # The scanner parses little-endian files itself; only the known exceptions go to pydicom.
    assert bool(fallbacks) == (path.name in EXPECTED_FALLBACKS)


def test_most_bundled_instances_are_parsed_without_pydicom(fallbacks: list[str]) -> None:
    readable = [p for p in ALL_FILES if p.name not in TRUNCATED and _pydicom_fields(p)]
    for path in readable:
        read_header(path)
    assert len(readable) > 90
    assert len(fallbacks) == len(EXPECTED_FALLBACKS)


@pytest.mark.parametrize(
    ("name", "patient_name"),
    [
        ("chrKoreanMulti.dcm", "김희중"),
        ("chrRuss.dcm", "Люкceмбypг"),
        ("chrH31.dcm", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
        ("chrX1.dcm", "Wang^XiaoDong=王^小東"),
        ("chrGreek.dcm", "Διονυσιος"),
    ],
)
def test_names_decoded_with_the_specific_character_set(name: str, patient_name: str) -> None:
    assert read_header(CHARSET_FILES / name)["PatientName"] == patient_name


def test_integer_and_text_types() -> None:
    fields = read_header(TEST_FILES / "CT_small.dcm")
    assert fields["Rows"] == 128 and fields["Columns"] == 128
    assert isinstance(fields["SeriesNumber"], int)
    assert fields["Modality"] == "CT"
    assert fields["TransferSyntaxUID"] == "1.2.840.10008.1.2.1"
    assert fields["NumberOfFrames"] is None


@pytest.mark.parametrize("cut", [140, 300, 700, 1500, 6296, 20000])  # 20000: inside the pixel data
def test_file_cut_anywhere_is_truncated(tmp_path: Path, cut: int) -> None:
    data = (TEST_FILES / "CT_small.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[:cut])
    with pytest.raises(TruncatedFileError, match="cut short"):
        read_header(path)


def test_pydicom_reads_a_cut_header_silently_and_the_scanner_does_not(tmp_path: Path) -> None:
    data = (TEST_FILES / "CT_small.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[:200])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert "SOPInstanceUID" not in ds  # what pydicom gives: a dataset without the instance
    with pytest.raises(TruncatedFileError):
        read_header(path)


def _without_preamble(source: Path, implicit: bool, little_endian: bool = True) -> bytes:
    plain = pydicom.Dataset(pydicom.dcmread(source))  # a bare dataset: no preamble, no meta
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.filewriter.dcmwrite(buffer, plain, implicit_vr=implicit, little_endian=little_endian,
                                    enforce_file_format=False, force_encoding=True)
    return buffer.getvalue()


@pytest.mark.parametrize(("implicit", "little"), [(True, True), (False, True), (False, False)])
def test_dataset_without_preamble_or_meta_is_dicom(tmp_path: Path, implicit: bool, little: bool) -> None:
    data = _without_preamble(TEST_FILES / "MR_small.dcm", implicit, little)
    assert data[128:132] != b"DICM"
    path = tmp_path / "noext"
    path.write_bytes(data)
    fields = read_header(path)
    assert fields["SOPInstanceUID"] == str(pydicom.dcmread(TEST_FILES / "MR_small.dcm").SOPInstanceUID)
    assert fields["PatientName"] == "CompressedSamples^MR1"


@pytest.mark.parametrize(
    "content",
    [b"", b"hello world\n" * 50, bytes(range(256)) * 40, b"\x08\x00\x10\x00garbage", b"PK\x03\x04" + bytes(200)],
)
def test_not_dicom(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "file.dcm"  # the extension says DICOM: it does not matter
    path.write_bytes(content)
    with pytest.raises(NotDicomError):
        read_header(path)


def test_unreadable_file_is_typed(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="cannot read"):
        read_header(tmp_path / "does-not-exist")


@pytest.mark.parametrize("first_read", [256, 1024])
def test_small_windows_give_the_same_values(monkeypatch: pytest.MonkeyPatch, first_read: int) -> None:
    # With a small first read, elements straddle the window's edge and values lie beyond it:
    # the scanner reads on from the file, and must find exactly what one large read finds.
    readable = [p for p in ALL_FILES if p.name not in TRUNCATED and _pydicom_fields(p)]
    expected = {p: read_header(p) for p in readable}
    monkeypatch.setattr(scan, "FIRST_READ", first_read)
    monkeypatch.setattr(scan, "_CHUNK", first_read)
    for path in readable:
        assert read_header(path) == expected[path], path.name
    for name in TRUNCATED:
        with pytest.raises(TruncatedFileError):
            read_header(TEST_FILES / name)
