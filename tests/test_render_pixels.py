"""The display pipeline of one frame, checked against pydicom's own LUT functions on real files.

Every object in pydicom's bundled test files that has pixel data renders, except the few
listed in :data:`CANNOT_RENDER` with the reason, which fail with our typed error.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import TEST_FILES, require_module
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, apply_voi_lut
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomnb.core.errors import DecoderMissing, DicomnbError, InputError, UnreadableFileError
from dicomnb.render import pixels as px

#: Bundled objects with pixel data that cannot be shown, the error they give, and why.
CANNOT_RENDER: dict[str, tuple[type[DicomnbError], str]] = {
    "JPEG-lossy.dcm": (UnreadableFileError, "a 12-bit JPEG Extended stream that libjpeg rejects "
                       "('a misplaced marker segment'); GDCM does not decode 12-bit JPEG Extended either"),
    "JPEG2000-embedded-sequence-delimiter.dcm": (UnreadableFileError, "its JPEG 2000 codestream is "
                                                 "corrupt: OpenJPEG, Pillow and GDCM cannot read its header"),
    "MR_truncated.dcm": (UnreadableFileError, "the pixel data is cut short: 8130 of 8192 bytes"),
    "badVR.dcm": (UnreadableFileError, "NumberOfFrames is '1A', not a number"),
    "meta_missing_tsyntax.dcm": (InputError, "pixel data without Rows, Columns or BitsAllocated"),
    "nested_priv_SQ.dcm": (InputError, "pixel data without Rows, Columns or BitsAllocated"),
}

#: The MR_small variants that hold the same pixels losslessly in other transfer syntaxes.
LOSSLESS_MR = ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
               "MR_small_bigendian.dcm", "MR_small_expb.dcm", "MR_small_implicit.dcm", "MR_small_padded.dcm"]


def read(name: str) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(get_testdata_file(name) or TEST_FILES / name, force=True)


def has_pixels(ds: Dataset) -> bool:
    return any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def bundled_with_pixels() -> list[str]:
    names = []
    for path in sorted(get_testdata_files()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, force=True, stop_before_pixels=False)
        except Exception:  # noqa: BLE001 - not DICOM (a DICOMDIR's junk, a text file): no pixels
            continue
        if has_pixels(ds):
            names.append(Path(path).relative_to(TEST_FILES).as_posix())
    return names


BUNDLED = bundled_with_pixels()


def voi_expected(values: np.ndarray, ds: Dataset, index: int = 0) -> np.ndarray:
    """pydicom's windowing output scaled from its output range to 0..255."""
    with np.errstate(over="ignore"):  # pydicom's SIGMOID overflows far from the centre (to the right limit)
        out = apply_voi_lut(values, ds, index=index, prefer_lut=False)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    else:
        slope, intercept = 1.0, 0.0
    bits = int(ds.BitsStored)
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if ds.PixelRepresentation else (0, 2**bits - 1)
    low, high = low * slope + intercept, high * slope + intercept
    return np.rint((out - low) / (high - low) * 255)


# -- every bundled object -------------------------------------------------------------------------

def test_the_list_of_what_cannot_render_is_current() -> None:
    assert len(BUNDLED) > 80
    assert set(CANNOT_RENDER) <= set(BUNDLED)


@pytest.mark.parametrize("name", [n for n in BUNDLED if n not in CANNOT_RENDER])
def test_every_bundled_image_renders(name: str) -> None:
    ds = read(name)
    count = px.frame_count(ds)
    for frame in sorted({0, count - 1}):
        image = px.display_array(ds, frame, where=name)
        assert image.dtype == np.uint8
        assert image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)
        assert image.shape[0] >= int(ds.Rows) or image.shape[1] >= int(ds.Columns)
    # a PNG of it is a valid PNG of that size
    png = px.encode_png(image)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert int.from_bytes(png[16:20], "big") == image.shape[1] and int.from_bytes(png[20:24], "big") == image.shape[0]


@pytest.mark.parametrize("name", sorted(CANNOT_RENDER))
def test_what_cannot_render_fails_with_our_error(name: str) -> None:
    error, _reason = CANNOT_RENDER[name]
    with pytest.raises(error) as raised:
        px.display_array(read(name), where=name)
    assert name in str(raised.value) or "image" in str(raised.value)


@pytest.mark.parametrize("name", LOSSLESS_MR)
def test_lossless_transfer_syntaxes_decode_to_the_same_image(name: str) -> None:
    reference = px.display_array(read("MR_small.dcm"))
    assert np.array_equal(px.display_array(read(name)), reference)


@pytest.mark.parametrize("name, syntax", [
    ("SC_rgb_jpeg_dcmtk.dcm", "JPEG Baseline"),
    ("JPGExtended.dcm", "JPEG Extended"),
    ("SC_rgb_jpeg_gdcm.dcm", "JPEG Lossless"),
    ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS Lossless"),
    ("JPEGLSNearLossless_16.dcm", "JPEG-LS Lossy"),
    ("MR_small_jp2klossless.dcm", "JPEG 2000 Image Compression (Lossless Only)"),
    ("693_J2KI.dcm", "JPEG 2000 Image Compression"),
    ("MR_small_RLE.dcm", "RLE Lossless"),
    ("image_dfl.dcm", "Deflated Explicit VR Little Endian"),
])
def test_compressed_transfer_syntaxes_decode(name: str, syntax: str) -> None:
    ds = read(name)
    assert ds.file_meta.TransferSyntaxUID.name.startswith(syntax)
    pixels, _ = px.decode(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.array_equal(pixels, ds.pixel_array)


# -- Modality LUT and VOI against pydicom -------------------------------------------------------

@pytest.mark.parametrize("name", ["CT_small.dcm", "693_J2KI.dcm", "dicomdirtests/77654033/CR1/6154",
                                  "dicomdirtests/98892001/CT5N/2062", "MR_small.dcm", "rtdose.dcm"])
def test_modality_values_are_pydicoms(name: str) -> None:
    ds = read(name)
    stored = ds.pixel_array[0] if px.frame_count(ds) > 1 else ds.pixel_array
    ours = px.modality_values(stored, px.frame_info(ds))
    np.testing.assert_allclose(ours, apply_modality_lut(stored, ds), rtol=1e-6, atol=1e-3)


def test_a_modality_lut_sequence_is_applied() -> None:
    ds = read("CT_small.dcm")
    del ds.RescaleSlope, ds.RescaleIntercept
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = [min(4 * i, 65535) for i in range(4096)]
    item["LUTData"].VR = "US"
    ds.ModalityLUTSequence = Sequence([item])
    stored = ds.pixel_array
    ours = px.modality_values(stored, px.frame_info(ds))
    assert np.array_equal(ours, apply_modality_lut(stored, ds).astype(np.float32))
    assert ours.max() == 4 * min(int(stored.max()), 4095)


@pytest.mark.parametrize("name, windows", [
    ("MR_small.dcm", 1),
    ("693_J2KI.dcm", 1),
    ("J2K_pixelrep_mismatch.dcm", 3),
    ("examples_overlay.dcm", 2),
    ("dicomdirtests/98892001/CT5N/2062", 1),
    ("dicomdirtests/98892003/MR2/4950", 1),
])
def test_the_files_windows_are_pydicoms(name: str, windows: int) -> None:
    ds = read(name)
    info = px.frame_info(ds)
    assert len(info.windows) == windows
    values = px.modality_values(ds.pixel_array, info)
    stored_values = apply_modality_lut(ds.pixel_array, ds)
    for index, window in enumerate(info.windows):
        ours = px.voi_display(values, info, window)
        expected = voi_expected(stored_values, ds, index)
        assert np.abs(ours.astype(int) - expected).max() <= 1
    # with no window asked for, the file's first is used
    assert np.array_equal(px.display_array(ds, overlays=False, square=False),
                          px.voi_display(values, info, info.windows[0]))


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize("center, width", [(40, 400), (-600, 1500), (1000, 1), (0.5, 2)])
def test_each_voi_lut_function_is_pydicoms(function: str, center: float, width: float) -> None:
    ds = read("CT_small.dcm")
    ds.VOILUTFunction = function
    ds.WindowCenter, ds.WindowWidth = center, width
    info = px.frame_info(ds)
    assert info.windows[0].function == function
    stored_values = apply_modality_lut(ds.pixel_array, ds)
    ours = px.voi_display(px.modality_values(ds.pixel_array, info), info, info.windows[0])
    assert np.abs(ours.astype(int) - voi_expected(stored_values, ds)).max() <= 1


def test_a_voi_lut_sequence_is_applied_and_offered_with_its_explanation() -> None:
    ds = read("MR_small.dcm")
    first, entries = 100, 1000
    item = Dataset()
    item.LUTDescriptor = [entries, first, 16]
    item.LUTExplanation = "Soft"
    item.LUTData = [round(4095 * (i / (entries - 1)) ** 0.5) for i in range(entries)]  # 12 bits used of 16
    item["LUTData"].VR = "US"
    ds.VOILUTSequence = Sequence([item])
    info = px.frame_info(ds)
    assert [w.name for w in info.windows] == ["Soft", "File window"]
    assert info.windows[0].lut == 0 and info.windows[0].label == "Soft (VOI LUT)"
    values = px.modality_values(ds.pixel_array, info)
    ours = px.display_array(ds, overlays=False, square=False)  # the table, as pydicom prefers it
    expected = np.rint(apply_voi(ds.pixel_array, ds, 0) / 4095 * 255)
    assert np.abs(ours.astype(int) - expected).max() <= 1
    # the file's window is still there, and differs
    windowed = px.voi_display(values, info, info.windows[1])
    assert not np.array_equal(windowed, ours)


def test_presets_for_ct_are_the_files_min_max_lung_bone_brain_abdomen() -> None:
    ds = read("dicomdirtests/98892001/CT5N/2062")
    info = px.frame_info(ds)
    values = px.modality_values(ds.pixel_array, info)
    presets = px.window_presets(info, values)
    assert [p.name for p in presets] == ["File window", "Min/max", "Lung", "Bone", "Brain", "Abdomen"]
    assert (presets[2].center, presets[2].width) == (-600, 1500)
    assert presets[1].center == (values.min() + values.max()) / 2 and presets[1].width == values.max() - values.min()
    lung = px.render(ds.pixel_array, info, "lung", square=False)
    assert np.array_equal(lung, px.apply_window(values, -600, 1500))
    # min/max: the lowest value black, the highest white
    stretched = px.render(ds.pixel_array, info, "Min/max", square=False)
    assert stretched.min() == 0 and stretched.max() == 255
    # an MR gets its own windows and min/max, no CT presets
    mr = read("examples_overlay.dcm")
    mr_info = px.frame_info(mr)
    assert [p.label for p in px.window_presets(mr_info, px.modality_values(mr.pixel_array, mr_info))][:2] == [
        "WINDOW1 (C 450, W 790)", "WINDOW2 (C 200, W 443)"]
    with pytest.raises(InputError, match="no window called 'nope'.*WINDOW1, WINDOW2, Min/max"):
        px.render(mr.pixel_array, mr_info, "nope")


def test_windows_outside_the_standard_are_refused_or_left_out() -> None:
    with pytest.raises(InputError, match="LINEAR window needs a width of at least 1"):
        px.apply_window(np.zeros(4), 0, 0.5)
    with pytest.raises(InputError, match="SIGMOID"):
        px.apply_window(np.zeros(4), 0, 0, "SIGMOID")
    ds = read("CT_small.dcm")
    ds.WindowCenter, ds.WindowWidth = [40, 50], [0, 350]  # a zero width in a file: that window is left out
    assert [(w.center, w.width) for w in px.frame_info(ds).windows] == [(50, 350)]


def test_monochrome1_is_inverted() -> None:
    ds = read("dicomdirtests/77654033/CR1/6154")
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    shown = px.display_array(ds, square=False)
    stored_values = apply_modality_lut(ds.pixel_array, ds)
    assert np.abs(shown.astype(int) - (255 - voi_expected(stored_values, ds))).max() <= 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    assert np.array_equal(shown, 255 - px.display_array(ds, square=False))


# -- colour -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["examples_rgb_color.dcm", "SC_rgb_small_odd_big_endian.dcm",
                                  "SC_ybr_full_422_uncompressed.dcm", "SC_rgb_jpeg_dcmtk.dcm", "examples_jpeg2k.dcm"])
def test_colour_is_shown_as_rgb(name: str) -> None:
    ds = read(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ds.pixel_array  # pydicom converts YBR_FULL and YBR_FULL_422 to RGB
    shown = px.display_array(ds, square=False)
    assert shown.shape == expected.shape and np.array_equal(shown, expected)
    if ds.PhotometricInterpretation.startswith("YBR"):
        assert px.decode(ds)[1] == "RGB"


def test_a_palette_is_looked_up() -> None:
    ds = read("examples_palette.dcm")
    shown = px.display_array(ds, square=False)
    expected = apply_color_lut(ds.pixel_array, ds) >> 8  # 16-bit entries
    assert shown.shape == (*ds.pixel_array.shape, 3) and np.array_equal(shown, expected)


def test_deep_colour_is_scaled_to_8_bits() -> None:
    ds = read("SC_rgb_rle_16bit.dcm")
    shown = px.display_array(ds, square=False)
    assert np.array_equal(shown, np.rint(ds.pixel_array / 65535 * 255))


# -- overlays, pixel shape, frames ---------------------------------------------------------------

def test_overlays_are_drawn_in_yellow() -> None:
    ds = read("examples_overlay.dcm")
    mask = ds.overlay_array(0x6000).astype(bool)
    shown = px.display_array(ds, square=False)
    plain = px.display_array(ds, overlays=False, square=False)
    assert shown.shape == (*plain.shape, 3)
    assert (shown[mask] == [255, 255, 0]).all()
    assert np.array_equal(shown[~mask], np.repeat(plain[~mask][:, None], 3, axis=1))


def test_an_overlay_off_the_image_is_clipped() -> None:
    image = np.zeros((4, 4), dtype=np.uint8)
    overlay = px.Overlay(row=-1, column=2, mask=np.ones((3, 5), dtype=bool))
    drawn = px.draw_overlays(image, [overlay])
    assert (drawn[:2, 2:] == [255, 255, 0]).all() and not drawn[2:].any() and not drawn[:, :2].any()


@pytest.mark.parametrize("keyword, value, shape", [
    ("PixelSpacing", [1.0, 0.5], (256, 128)),
    ("PixelSpacing", [0.5, 1.0], (128, 256)),
    ("ImagerPixelSpacing", [0.3, 0.3], (128, 128)),
    ("PixelAspectRatio", [3, 1], (384, 128)),
])
def test_pixels_are_made_square(keyword: str, value: list[float], shape: tuple[int, int]) -> None:
    ds = read("CT_small.dcm")
    del ds.PixelSpacing
    setattr(ds, keyword, value)
    shown = px.display_array(ds)
    assert shown.shape == shape
    assert np.array_equal(px.display_array(ds, square=False), shown[:: shape[0] // 128, :: shape[1] // 128])


def enhanced_ct(path: Path) -> tuple[Path, np.ndarray]:
    """A 3-frame enhanced CT whose frames have their own rescale and window."""
    stored = np.stack([np.full((8, 8), 100 * (i + 1), dtype=np.int16) + np.arange(64, dtype=np.int16).reshape(8, 8)
                       for i in range(3)])
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 8, 8, 3
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [0.5, 0.5]
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for index, (slope, intercept, center, width) in enumerate([(1, -1024, 40, 400), (2, 0, 300, 200), (0.5, 10, 60, 30)]):
        group = Dataset()
        rescale = Dataset()
        rescale.RescaleSlope, rescale.RescaleIntercept, rescale.RescaleType = slope, intercept, "HU"
        group.PixelValueTransformationSequence = Sequence([rescale])
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = center, width
        voi.WindowCenterWidthExplanation = f"frame {index + 1}"
        group.FrameVOILUTSequence = Sequence([voi])
        position = Dataset()
        position.ImagePositionPatient = [0, 0, 5 * index]
        group.PlanePositionSequence = Sequence([position])
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = stored.tobytes()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path, stored


def test_each_frame_of_an_enhanced_object_has_its_own_rescale_and_window(tmp_path: Path) -> None:
    path, stored = enhanced_ct(tmp_path / "enhanced.dcm")
    ds = pydicom.dcmread(path)
    for frame, (slope, intercept, center, width) in enumerate([(1, -1024, 40, 400), (2, 0, 300, 200),
                                                               (0.5, 10, 60, 30)]):
        info = px.frame_info(ds, frame)
        assert (info.slope, info.intercept) == (slope, intercept) and info.spacing == (0.5, 0.5)
        assert [(w.name, w.center, w.width) for w in info.windows] == [(f"frame {frame + 1}", center, width)]
        values = px.modality_values(stored[frame], info)
        assert np.array_equal(values, stored[frame] * slope + intercept)
        flat = px.frame_dataset(ds, frame)
        assert np.array_equal(px.display_array(ds, frame), px.apply_window(values, center, width))
        assert np.abs(px.display_array(ds, frame).astype(int) - voi_expected(values, flat)).max() <= 1
    assert [float(px.frame_dataset(ds, f).ImagePositionPatient[2]) for f in range(3)] == [0, 5, 10]
    with pytest.raises(InputError, match="has 3 frame.*no frame 4"):
        px.display_array(ds, 3)


def test_the_frame_rate_comes_from_the_file() -> None:
    ds = read("examples_ybr_color.dcm")
    assert px.frame_rate(ds) == pytest.approx(1000 / 33.333)
    ds.CineRate = 25
    assert px.frame_rate(ds) == 25
    ds.RecommendedDisplayFrameRate = 12
    assert px.frame_rate(ds) == 12
    assert px.frame_rate(Dataset()) == 10


def test_no_pixel_data_is_an_input_error() -> None:
    with pytest.raises(InputError, match="has no pixel data"):
        px.decode(read("rtplan.dcm"), where="rtplan.dcm")


# -- PNG ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(5, 7), (64, 33, 3), (1, 1), (3, 2, 4)])
def test_png_round_trips(shape: tuple[int, ...]) -> None:
    require_module("PIL", "test")
    from PIL import Image

    image = np.random.default_rng(7).integers(0, 256, size=shape, dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(px.encode_png(image))))
    assert np.array_equal(decoded, image)


# -- without the decoders ---------------------------------------------------------------------------

HIDDEN_DECODERS = textwrap.dedent("""
    import sys
    for name in ("pylibjpeg", "libjpeg", "openjpeg", "rle", "jpeg_ls", "gdcm"):
        sys.modules[name] = None  # as if not installed
    import pydicom
    from dicomnb.core.errors import DecoderMissing
    from dicomnb.render.pixels import display_array
    from dicomnb.render.stack import ImageView
    path = sys.argv[1]
    try:
        display_array(pydicom.dcmread(path), where=path)
    except DecoderMissing as exc:
        print("DecoderMissing:", exc)
    print("HTML:", ImageView(path).html())
""")


def test_a_missing_decoder_names_the_extra_to_install() -> None:
    path = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
    done = subprocess.run([sys.executable, "-c", HIDDEN_DECODERS, path], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("DecoderMissing: ") and "JPEG-LS Lossless" in lines[0]
    assert "pip install 'dicomnb[codecs]'" in lines[0]
    # the view shows the message in place of the image
    assert lines[1].startswith("HTML: ") and "cannot be shown" in lines[1] and "dicomnb[codecs]" in lines[1]
    assert "<img" not in lines[1]


def test_decoder_missing_is_raised_in_process_when_no_plugin_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydicom.pixels.decoders.base import JPEGLSLosslessDecoder

    monkeypatch.setattr(JPEGLSLosslessDecoder, "_available", {})
    with pytest.raises(DecoderMissing, match=r"JPEG-LS Lossless.*pip install 'dicomnb\[codecs\]'"):
        px.decode(read("MR_small_jpeg_ls_lossless.dcm"))
