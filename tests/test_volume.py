"""A series as a Volume: slice order, geometry from the positions, values, and what is no volume."""

from __future__ import annotations

import os
import random
import shutil
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from conftest import TEST_FILES
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless, generate_uid

import dicomnb
from dicomnb.core.archive import in_archive
from dicomnb.core.errors import InputError, UnreadableFileError
from dicomnb.core.volume import NotAVolume, Volume, load_volume, read_pixels

BACKGROUND = 1000  # stored value of the body; the intercept makes it -24 HU


def direction_vectors(iop: Iterable[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values = np.asarray(list(iop), dtype=float)
    row, column = values[:3] / np.linalg.norm(values[:3]), values[3:] / np.linalg.norm(values[3:])
    return row, column, np.cross(row, column)


def write_series(folder: Path, *, slices: int = 40, rows: int = 48, columns: int = 64,
                 spacing: tuple[float, float] = (0.8, 0.6), gap: float = 2.5,
                 iop: Iterable[float] = (1, 0, 0, 0, 1, 0), origin: Iterable[float] = (-20.0, -15.0, 30.0),
                 markers: dict[tuple[int, int, int], int] | None = None, shear: Iterable[float] = (0, 0, 0),
                 slope: float = 1.0, intercept: float = -1024.0, compress: str | None = None,
                 skip: Iterable[int] = (), seed: int = 7) -> list[Path]:
    """Write a CT series of known geometry, one file per slice, in a shuffled order.

    Slice ``k`` lies at ``origin + k × gap × normal + k × shear``; voxel ``(k, i, j)`` at that
    plus ``i × spacing[0]`` along the column direction and ``j × spacing[1]`` along the row
    direction. Stored value ``[0, 0]`` of slice ``k`` is ``k`` (to tell slices apart);
    ``markers`` sets single voxels. SliceThickness is deliberately wrong (twice the gap), and
    InstanceNumber runs against the spatial order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    row_dir, column_dir, normal = direction_vectors(iop)
    start, tilt = np.asarray(list(origin), float), np.asarray(list(shear), float)
    series = generate_uid()
    paths = []
    kept = [k for k in range(slices) if k not in set(skip)]
    for k in kept:
        pixels = np.full((rows, columns), BACKGROUND, dtype=np.int16)
        pixels[0, 0] = k
        for (mk, mi, mj), value in (markers or {}).items():
            if mk == k:
                pixels[mi, mj] = value
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = series
        ds.StudyInstanceUID = "1.2.3.4"
        ds.PatientID = "VOLUME"
        ds.Modality = "CT"
        ds.SeriesDescription = "synthetic volume"
        ds.InstanceNumber = slices - k
        ds.ImageOrientationPatient = [float(v) for v in iop]
        position = start + k * gap * normal + k * tilt
        ds.ImagePositionPatient = [round(float(v), 6) for v in position]
        ds.PixelSpacing = list(spacing)
        ds.SliceThickness = 2 * gap
        ds.Rows, ds.Columns = rows, columns
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = pixels.tobytes()
        if compress == "rle":
            ds.compress(RLELossless, pixels)
        path = folder / f"im{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    random.Random(seed).shuffle(paths)
    return paths


def patient_position(voxel: tuple[float, float, float], *, gap: float = 2.5, spacing: tuple[float, float] = (0.8, 0.6),
                     iop: Iterable[float] = (1, 0, 0, 0, 1, 0), origin: Iterable[float] = (-20.0, -15.0, 30.0),
                     shear: Iterable[float] = (0, 0, 0)) -> np.ndarray:
    """Where :func:`write_series` put voxel ``(slice, row, column)``, in patient mm."""
    row_dir, column_dir, normal = direction_vectors(iop)
    k, i, j = voxel
    return (np.asarray(list(origin), float) + k * gap * normal + k * np.asarray(list(shear), float)
            + i * spacing[0] * column_dir + j * spacing[1] * row_dir)


def strs(paths: Iterable[Path]) -> list[str]:
    return [os.fspath(p) for p in paths]


# -- order, geometry, values ------------------------------------------------------------------
def test_shuffled_slices_come_out_in_position_order_with_their_geometry(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", slices=12)
    volume = load_volume(strs(paths))
    assert volume.shape == (12, 48, 64)
    assert list(volume.array[:, 0, 0] + 1024) == list(range(12))  # stored [0, 0] is the slice number
    # spacing from the positions (2.5), not SliceThickness (5.0); rows 0.8 and columns 0.6 apart
    assert volume.spacing == pytest.approx((2.5, 0.8, 0.6))
    np.testing.assert_allclose(volume.origin, [-20, -15, 30])
    np.testing.assert_allclose(volume.positions, 30 + 2.5 * np.arange(12))
    np.testing.assert_allclose(volume.normal, [0, 0, 1])
    assert volume.regular and volume.notes == ()
    by_position = sorted((float(ds.ImagePositionPatient[2]), ds.SOPInstanceUID)
                         for ds in (pydicom.dcmread(p) for p in paths))
    assert volume.sop_instance_uids == tuple(uid for _, uid in by_position)


def test_the_affine_maps_every_voxel_where_it_was_written_also_oblique(tmp_path: Path) -> None:
    angle = np.radians(25)
    iop = (np.cos(angle), np.sin(angle), 0.0, 0.0, np.cos(0.3), -np.sin(0.3))  # turned and tilted
    paths = write_series(tmp_path / "s", slices=10, iop=iop)
    volume = load_volume(strs(paths))
    for voxel in [(0, 0, 0), (9, 47, 63), (4, 10, 30), (7, 33, 2)]:
        expected = patient_position(voxel, iop=iop)
        np.testing.assert_allclose(volume.voxel_to_patient(voxel), expected, atol=1e-4)
        np.testing.assert_allclose(volume.patient_to_voxel(expected), voxel, atol=1e-4)
    np.testing.assert_allclose(volume.affine @ [4, 10, 30, 1], [*patient_position((4, 10, 30), iop=iop), 1], atol=1e-4)


def test_a_marker_is_found_at_its_patient_position(tmp_path: Path) -> None:
    marker = (23, 31, 9)
    paths = write_series(tmp_path / "s", markers={marker: 3000})
    volume = load_volume(strs(paths))
    found = np.unravel_index(int(np.argmax(volume.array)), volume.shape)
    assert found == marker
    np.testing.assert_allclose(volume.patient_to_voxel(patient_position(marker)), marker, atol=1e-6)


def test_values_are_pydicoms_modality_lut_in_a_small_exact_type(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", slices=6)
    volume = load_volume(strs(paths))
    assert volume.array.dtype == np.int16  # -1024..2000 fits: not float64 (4x the memory)
    ds, expected = read_pixels(os.fspath(paths[0]))
    k = int(round((float(ds.ImagePositionPatient[2]) - 30) / 2.5))
    np.testing.assert_array_equal(volume.array[k], expected)
    raw = load_volume(strs(paths), modality_lut=False)
    assert raw.array.dtype == np.int16 and raw.array[k, 5, 5] == BACKGROUND


def test_a_fractional_rescale_gives_float32_per_slice(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "a", slices=4, slope=0.5, intercept=-10.25)
    # a PET-like series: each slice its own slope
    ds = pydicom.dcmread(paths[0])
    ds.RescaleSlope = 2.0
    ds.save_as(paths[0])
    volume = load_volume(strs(paths))
    assert volume.array.dtype == np.float32
    for path in paths:
        ds, expected = read_pixels(os.fspath(path))
        k = int(round((float(ds.ImagePositionPatient[2]) - 30) / 2.5))
        np.testing.assert_allclose(volume.array[k], expected, rtol=1e-6)


def test_a_gap_and_a_shear_are_noted_and_the_affine_follows_the_positions(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "gap", slices=10, skip=[5])
    volume = load_volume(strs(paths))
    assert volume.shape[0] == 9 and not volume.regular
    assert "not regular" in volume.notes[0]
    sheared = write_series(tmp_path / "tilt", slices=8, shear=(0, 0.4, 0))  # a gantry tilt of 9°
    volume = load_volume(strs(sheared))
    assert any("sheared" in n for n in volume.notes) and volume.regular  # evenly spaced, only sheared
    for k in (0, 3, 7):
        np.testing.assert_allclose(volume.voxel_to_patient((k, 2, 3)), patient_position((k, 2, 3), shear=(0, 0.4, 0)),
                                   atol=1e-4)


# -- decoding in parallel ---------------------------------------------------------------------
def _shared_memory_blocks() -> set[str]:
    if not os.path.isdir("/dev/shm"):
        return set()
    return {name for name in os.listdir("/dev/shm") if name.startswith("dicomnb-volume-")}


@pytest.mark.parametrize("compress", [None, "rle"], ids=["uncompressed", "rle"])
@pytest.mark.parametrize("strategy", ["auto", "serial", "threads", "processes"])
def test_every_strategy_gives_the_same_volume(tmp_path: Path, strategy: str, compress: str | None) -> None:
    paths = write_series(tmp_path / "s", slices=20, compress=compress, markers={(5, 6, 7): 2500})
    before = _shared_memory_blocks()
    volume = load_volume(strs(paths), strategy=strategy)  # type: ignore[arg-type]
    expected = np.full((20, 48, 64), BACKGROUND - 1024, dtype=np.int16)
    expected[:, 0, 0] = np.arange(20) - 1024
    expected[5, 6, 7] = 2500 - 1024
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, expected)
    np.testing.assert_allclose(volume.positions, 30 + 2.5 * np.arange(20))
    assert _shared_memory_blocks() == before  # the block of the worker processes is gone


def _rewrite_pixels(path: Path, raw: np.ndarray, *, rle: bool = False, **attributes: object) -> None:
    """New pixel data (as given: garbage in unused bits included) and attributes for a slice."""
    ds = pydicom.dcmread(path)
    ds.PixelData = raw.tobytes()
    if rle:  # encoded as 16 bits stored, so that the garbage goes in as it is
        ds.PixelRepresentation = 0
        ds.compress(RLELossless, raw.astype("<u2"))
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


@pytest.mark.parametrize("rle", [False, True], ids=["uncompressed", "rle"])
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize("strategy", ["auto", "threads", "processes"])
def test_unused_high_bits_are_ignored_as_pydicom_does(tmp_path: Path, signed: bool, strategy: str, rle: bool) -> None:
    """12 bits stored in 16 with garbage above them: the values are pydicom's (sign-extended or masked)."""
    paths = write_series(tmp_path / "s", slices=18, rows=8, columns=8)
    rng = np.random.default_rng(3)
    expected = {}
    for path in paths:
        values = rng.integers(-2048 if signed else 0, 2048 if signed else 4096, (8, 8))
        garbage = rng.integers(0, 16, (8, 8)) << 12
        raw = ((values & 0x0FFF) | garbage).astype("<u2")
        _rewrite_pixels(path, raw, rle=rle, BitsStored=12, HighBit=11, PixelRepresentation=int(signed),
                        RescaleIntercept=0)
        with_pydicom = pydicom.dcmread(path).pixel_array
        np.testing.assert_array_equal(with_pydicom, values)  # the reference: pydicom's own decoding
        expected[float(pydicom.dcmread(path).ImagePositionPatient[2])] = with_pydicom
        _, read = read_pixels(os.fspath(path), modality_lut=False)
        np.testing.assert_array_equal(read, with_pydicom)
        read[0, 0] = 1  # and the array is the caller's to change
    volume = load_volume(strs(paths), strategy=strategy)  # type: ignore[arg-type]
    np.testing.assert_array_equal(volume.array, np.stack([expected[z] for z in sorted(expected)]))


def test_the_bundled_rle_images_decode_as_pydicom_decodes_them() -> None:
    for name in ("MR_small_RLE.dcm", "rtdose_rle_1frame.dcm"):
        ds = pydicom.dcmread(TEST_FILES / name)
        _, pixels = read_pixels(os.fspath(TEST_FILES / name), modality_lut=False)
        assert pixels.dtype == ds.pixel_array.dtype, name
        np.testing.assert_array_equal(pixels, ds.pixel_array, err_msg=name)


@pytest.mark.parametrize("strategy", ["auto", "processes"])
def test_values_beyond_int16_widen_the_type(tmp_path: Path, strategy: str) -> None:
    paths = write_series(tmp_path / "s", slices=16, rows=8, columns=8, intercept=1000)
    raw = np.full((8, 8), 32000, dtype="<i2")
    _rewrite_pixels(paths[4], raw)  # 32000 + 1000 does not fit int16
    volume = load_volume(strs(paths), strategy=strategy)  # type: ignore[arg-type]
    assert volume.array.dtype == np.int32 and volume.array.max() == 33000
    assert volume.array.min() == 1000  # the [0, 0] of slice 0


@pytest.mark.parametrize("strategy", ["serial", "threads", "processes"])
def test_the_type_does_not_depend_on_the_first_slice_given(tmp_path: Path, strategy: str) -> None:
    """Unsigned slices, the one given first without a rescale and the others with one: every way
    of reading picks the type from all of them (int16, since the values fit)."""
    paths = write_series(tmp_path / "s", slices=16, rows=8, columns=8, intercept=10)
    for path in paths:
        _rewrite_pixels(path, np.full((8, 8), 7, dtype="<u2"), PixelRepresentation=0)
    _rewrite_pixels(paths[0], np.full((8, 8), 7, dtype="<u2"), RescaleIntercept=0)
    volume = load_volume(strs(paths), strategy=strategy)  # type: ignore[arg-type]
    assert volume.array.dtype == np.int16
    assert sorted(np.unique(volume.array)) == [7, 17]


def test_the_stored_values_of_every_plain_bundled_file_are_pydicoms() -> None:
    """read_pixels takes uncompressed monochrome data straight from its bytes: as pydicom decodes it."""
    compared = 0
    for name in sorted(pydicom.data.get_testdata_files()):
        path = Path(name)
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path, force=True)
            if ds.file_meta.get("TransferSyntaxUID") not in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1") \
                    or "PixelData" not in ds or ds.get("PhotometricInterpretation") not in ("MONOCHROME1", "MONOCHROME2"):
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = ds.pixel_array
        except Exception:  # noqa: BLE001 - what pydicom cannot decode is not compared
            continue
        _, pixels = read_pixels(os.fspath(path), modality_lut=False)
        assert pixels.dtype == expected.dtype and pixels.shape == expected.shape, path.name
        np.testing.assert_array_equal(pixels, expected, err_msg=path.name)
        compared += 1
    assert compared >= 20


def test_a_slice_cut_short_is_a_typed_error(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "s", slices=6)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[:-1000])
    with pytest.raises(UnreadableFileError):
        load_volume(strs(paths))


def test_a_broken_slice_decoded_in_a_worker_process_is_a_typed_error(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "rle", slices=10, compress="rle")
    broken = pydicom.dcmread(paths[3])
    broken.PixelData = broken.PixelData[:40]  # the fragments cut short
    broken.save_as(paths[3])
    before = _shared_memory_blocks()
    with pytest.raises(UnreadableFileError, match="cannot decode the pixel data"):
        load_volume(strs(paths), strategy="processes")
    assert _shared_memory_blocks() == before


def test_records_of_the_catalog_from_a_folder_and_a_zip(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "series", slices=9, markers={(4, 4, 4): 2000})
    dicomnb.import_local(tmp_path / "series")
    uid = dicomnb.catalog.series["SeriesInstanceUID"].iloc[0]
    from_folder = load_volume(dicomnb.catalog.series_records(uid))
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in paths:
            zf.write(path, path.name)
    shutil.rmtree(tmp_path / "series")
    dicomnb.catalog.clear()
    dicomnb.import_zip(archive)
    records = dicomnb.catalog.series_records(uid)
    assert all(in_archive(r) for r in records)  # read from inside the archive
    np.testing.assert_array_equal(load_volume(records).array, from_folder.array)
    assert from_folder.array[4, 4, 4] == 2000 - 1024
    dicomnb.catalog.clear()
    dicomnb.import_zip(archive, copy=True)  # landed: records of files of their own
    records = dicomnb.catalog.series_records(uid)
    assert not any(in_archive(r) for r in records)
    # InstanceNumber runs against the position: the processes fill the slots backwards
    np.testing.assert_array_equal(load_volume(records, strategy="processes").array, from_folder.array)


# -- one instance of many frames --------------------------------------------------------------
def test_rt_dose_frames_are_a_volume_in_gray() -> None:
    volume = load_volume(os.fspath(TEST_FILES / "rtdose.dcm"))
    ds = pydicom.dcmread(TEST_FILES / "rtdose.dcm")
    assert volume.shape == (15, 10, 10) and volume.spacing == pytest.approx((5.0, 10.0, 10.0))
    np.testing.assert_allclose(volume.array, ds.pixel_array * float(ds.DoseGridScaling), rtol=1e-6)
    np.testing.assert_allclose(volume.voxel_to_patient((14, 0, 0)), [189.43125, 199.43125, -761.87 + 70])


def test_an_enhanced_multiframe_sorts_its_frames_by_plane_position(tmp_path: Path) -> None:
    ds = pydicom.dcmread(write_series(tmp_path / "one", slices=1)[0])
    frames = 5
    stack = np.stack([np.full((48, 64), 100 * k, dtype=np.int16) for k in range(frames)])
    ds.NumberOfFrames = frames
    ds.PixelData = stack.tobytes()
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "RescaleSlope",
                    "RescaleIntercept"):
        delattr(ds, keyword)
    shared = Dataset()
    shared.PlaneOrientationSequence = DicomSequence([Dataset()])
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelMeasuresSequence = DicomSequence([Dataset()])
    shared.PixelMeasuresSequence[0].PixelSpacing = [0.5, 0.7]
    shared.PixelValueTransformationSequence = DicomSequence([Dataset()])
    shared.PixelValueTransformationSequence[0].RescaleSlope = 1
    shared.PixelValueTransformationSequence[0].RescaleIntercept = -1000
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    per_frame = []
    for k in range(frames):  # stored top to bottom: frame k at z = -3k
        item = Dataset()
        item.PlanePositionSequence = DicomSequence([Dataset()])
        item.PlanePositionSequence[0].ImagePositionPatient = [0, 0, -3.0 * k]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path)
    volume = load_volume(os.fspath(path))
    assert volume.spacing == pytest.approx((3.0, 0.5, 0.7))
    assert list(volume.array[:, 0, 0]) == [400 - 1000, 300 - 1000, 200 - 1000, 100 - 1000, -1000]
    np.testing.assert_allclose(volume.origin, [0, 0, -12])


# -- what is not a volume -------------------------------------------------------------------------
def _with(path: Path, **changes: object) -> None:
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)


def test_what_is_not_one_grid_is_a_typed_error_that_says_why(tmp_path: Path) -> None:
    cases = {
        "one image": ([os.fspath(TEST_FILES / "CT_small.dcm")], "one image"),
        "colour frames": ([os.fspath(TEST_FILES / "SC_rgb_rle_2frame.dcm")], "colour"),
        "a cine loop": ([os.fspath(TEST_FILES / "examples_ybr_color.dcm")], "colour"),
    }
    localizer = write_series(tmp_path / "localizer", slices=5)
    _with(localizer[2], ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    cases["a localizer among the slices"] = (strs(localizer), "2 different orientations")
    sizes = write_series(tmp_path / "sizes", slices=4)
    small = pydicom.dcmread(sizes[1])
    small.Rows, small.Columns, small.PixelData = 2, 2, np.zeros((2, 2), np.int16).tobytes()
    small.save_as(sizes[1])
    cases["differing sizes"] = (strs(sizes), "differ in size")
    twice = write_series(tmp_path / "twice", slices=4)
    _with(twice[0], ImagePositionPatient=pydicom.dcmread(twice[1]).ImagePositionPatient)
    cases["two at one position"] = (strs(twice), "same position")
    nowhere = write_series(tmp_path / "nowhere", slices=3)
    _with(nowhere[1], ImagePositionPatient=None)
    cases["no position"] = (strs(nowhere), "no ImagePositionPatient")
    for name, (sources, message) in cases.items():
        with pytest.raises(NotAVolume, match=message) as caught:
            load_volume(sources)
        assert isinstance(caught.value, InputError), name
    with pytest.raises(InputError, match="no instances"):
        load_volume([])


def test_a_volume_from_an_array_has_default_geometry() -> None:
    volume = Volume(np.zeros((3, 4, 5), np.int16), spacing=(2.0, 1.0, 1.0))
    assert volume.shape == (3, 4, 5) and list(volume.positions) == [0.0, 2.0, 4.0]
    np.testing.assert_allclose(volume.voxel_to_patient((1, 2, 3)), [3, 2, 2])
    with pytest.raises(ValueError, match="3 axes"):
        Volume(np.zeros((4, 5)))
