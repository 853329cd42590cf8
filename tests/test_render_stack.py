"""Image and stack views: slice order, each slice decoded once, cine, the widgets, thumbnails.

Widgets are driven from Python as a person's clicks would (setting a slider's value runs its
observers); what is checked is what the person sees: the image bytes, the caption, the
sliders' values.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import TEST_FILES, require_module
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

import dicomnb
from dicomnb.core.errors import InputError, UnreadableFileError
from dicomnb.render import pixels as px
from dicomnb.render import thumbnail
from dicomnb.render.stack import FrameCache, ImageView, StackView

SIZE = 32
WAIT = 10


def write_series(folder: Path, count: int = 12, *, spacing: float = 2.5) -> list[Path]:
    """A CT series: slice k at z = k × spacing holds values 10 k + a gradient; files and
    InstanceNumbers in an order other than the positions'."""
    folder.mkdir(parents=True, exist_ok=True)
    series, study = generate_uid(), generate_uid()
    order = list(range(count))
    random.Random(3).shuffle(order)
    paths = []
    for file_index, k in enumerate(order):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientID, ds.PatientName, ds.Modality, ds.SeriesDescription = "P1", "Test^Stack", "CT", "Synthetic"
        ds.InstanceNumber = count - k  # reversed: position, not number, decides
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, k * spacing]
        ds.PixelSpacing = [0.7, 0.7]
        ds.Rows = ds.Columns = SIZE
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.WindowCenter, ds.WindowWidth = 40, 400
        stored = (1024 + 10 * k + np.arange(SIZE * SIZE).reshape(SIZE, SIZE) % 7).astype(np.int16)
        ds.PixelData = stored.tobytes()
        path = folder / f"file{file_index:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def wait_until(condition, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


# -- slices and their order -----------------------------------------------------------------------

def test_slices_are_sorted_by_position_along_the_normal(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "ct")
    view = StackView(paths, prefetch=0)
    assert view.kind == "stack" and len(view) == 12
    assert [s.position for s in view.slices] == [k * 2.5 for k in range(12)]
    assert [s.instance for s in view.slices] == list(range(12, 0, -1))
    assert view.title == "CT Synthetic (12 slices)"
    for index in (0, 5, 11):  # slice k holds 10 k HU (+ 0..6)
        assert view.values(index).min() == 10 * index
    assert view.slices[3].label == "instance 9 · 7.5 mm"
    assert view.caption(3) == "slice 4/12 · instance 9 · 7.5 mm · File window (C 40, W 400)"


def test_render_is_the_pipelines_output_for_that_slice(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "ct")
    view = StackView(paths, prefetch=0)
    ds = pydicom.dcmread(next(p for p in paths if pydicom.dcmread(p).ImagePositionPatient[2] == 10.0))
    assert np.array_equal(view.render(4), px.display_array(ds))
    assert np.array_equal(view.render(4, center=0, width=100), px.display_array(ds, window=(0, 100)))
    assert np.array_equal(view.render(4, window="lung"), px.display_array(ds, window="lung"))
    assert view.png(4).startswith(b"\x89PNG")
    with pytest.raises(InputError, match="there is no slice 12: this view has 12"):
        view.render(12)


def test_each_slice_is_decoded_once_while_scrolling(tmp_path: Path) -> None:
    view = StackView(write_series(tmp_path / "ct", 20), prefetch=2)
    view.render(0)
    # the neighbours are decoded ahead, in the background
    assert wait_until(lambda: view.decoded == 3)
    for _ in range(2):
        for index in [*range(20), *range(19, -1, -1)]:
            view.render(index, center=40 + index, width=400)
    view.close()
    assert view.decoded == 20 and len(view.cache) == 20


def test_the_cache_is_bounded_in_bytes(tmp_path: Path) -> None:
    frame_bytes = SIZE * SIZE * 2
    view = StackView(write_series(tmp_path / "ct", 10), cache_bytes=4 * frame_bytes, prefetch=0)
    for index in range(10):
        view.render(index)
    assert len(view.cache) == 4 and view.cache.nbytes == 4 * frame_bytes
    view.render(9)
    assert view.decoded == 10  # still cached
    view.render(0)
    assert view.decoded == 11  # dropped long ago: decoded again


def test_frame_cache_drops_the_least_recently_used() -> None:
    cache = FrameCache(max_bytes=30)
    for key in "abc":
        cache.put(key, np.zeros(10, dtype=np.uint8))
    assert cache.get("a") is not None  # now the most recent
    cache.put("d", np.zeros(10, dtype=np.uint8))
    assert "b" not in cache and all(k in cache for k in "acd")
    cache.put("big", np.zeros(100, dtype=np.uint8))  # over the bound alone: kept, the rest dropped
    assert len(cache) == 1 and cache.nbytes == 100


def test_unreadable_files_are_left_out_and_named(tmp_path: Path) -> None:
    paths = write_series(tmp_path / "ct", 4)
    cut = tmp_path / "ct" / "cut.dcm"
    cut.write_bytes(paths[0].read_bytes()[:200])
    plan = tmp_path / "ct" / "plan.dcm"
    shutil.copy(TEST_FILES / "rtplan.dcm", plan)
    view = StackView([*paths, cut, plan], prefetch=0)
    assert len(view) == 4 and len(view.skipped) == 2
    assert any("cut.dcm" in text for text in view.skipped)
    assert any("plan.dcm is not an image" in text for text in view.skipped)
    assert "Left out: " in view.html()
    with pytest.raises(InputError, match="is not an image"):
        StackView([plan])
    with pytest.raises(InputError, match="cut.dcm is not an image: it has no Rows and Columns"):
        ImageView(cut)
    with pytest.raises(UnreadableFileError, match="cannot read"):
        ImageView(tmp_path / "missing.dcm")


# -- multi-frame and cine -----------------------------------------------------------------------

def test_a_multi_frame_instance_is_a_stack_of_its_frames() -> None:
    path = TEST_FILES / "examples_ybr_color.dcm"
    view = StackView(path, prefetch=0)
    assert len(view) == 30 and view.title == "US (30 frames)"
    assert [s.frame for s in view.slices] == list(range(30))
    assert view.window is None and view.presets() == []  # colour: no window
    ds = pydicom.dcmread(path)
    assert np.array_equal(view.render(7), px.display_array(ds, 7))
    assert view.caption(7) == "slice 8/30 · instance 16117 · frame 8/30"
    assert view.decoded == 1  # one frame decoded, not thirty


def test_cine_plays_at_the_files_frame_rate() -> None:
    require_module("ipywidgets", "notebook")
    view = StackView(TEST_FILES / "examples_ybr_color.dcm", prefetch=0)
    box = view.widget()
    assert view.widget() is box  # built once
    play = next(w for w in walk(box) if "dicomnb-cine" in getattr(w, "_dom_classes", ()))
    slider = next(w for w in walk(box) if "dicomnb-slice" in getattr(w, "_dom_classes", ()))
    image = next(w for w in walk(box) if "dicomnb-view-image" in getattr(w, "_dom_classes", ()))
    assert play.interval == 33 and play.max == 29  # FrameTime 33.333 ms: 30 frames/s
    before = image.value
    play.value = 3  # what the Play button does each tick
    assert slider.value == 3 and image.value != before and view.index == 3


def walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


# -- the widgets ------------------------------------------------------------------------------------

def controls(view):
    box = view.widget()
    found = {}
    for widget in walk(box):
        for css in ("dicomnb-view-image", "dicomnb-slice", "dicomnb-presets", "dicomnb-center", "dicomnb-width",
                    "dicomnb-cine"):
            if css in getattr(widget, "_dom_classes", ()):
                found[css.removeprefix("dicomnb-").removeprefix("view-")] = widget
    found["caption"] = next(w for w in walk(box) if type(w).__name__ == "Label")
    return found


def test_window_sliders_presets_and_the_slice_slider(tmp_path: Path) -> None:
    require_module("ipywidgets", "notebook")
    view = StackView(write_series(tmp_path / "ct"), prefetch=0)
    ui = controls(view)
    assert "cine" not in ui  # single-frame slices: no Play
    assert [label for label, _ in ui["presets"].options] == [
        "File window (C 40, W 400)", "Min/max (C 63, W 6)", "Lung (C -600, W 1500)", "Bone (C 400, W 1800)",
        "Brain (C 40, W 80)", "Abdomen (C 50, W 400)"]
    assert (ui["center"].value, ui["width"].value) == (40, 400)
    assert ui["center"].min <= -1350 and ui["center"].max >= 1300  # every preset's range is reachable
    assert ui["image"].value == view.png(6) and ui["caption"].value.startswith("slice 7/12")
    # a preset sets the sliders and the image
    ui["presets"].value = 4
    assert (ui["center"].value, ui["width"].value) == (40, 80)
    assert ui["image"].value == view.png(6, 40, 80)
    # moving a slider is a custom window: no preset is selected
    ui["center"].value = 70
    assert view.window.name == "Custom" and ui["presets"].index is None
    assert ui["image"].value == view.png(6, 70, 80)
    # another slice, the same window
    ui["slice"].value = 2
    assert ui["image"].value == view.png(2, 70, 80)
    assert ui["caption"].value == "slice 3/12 · instance 10 · 5.0 mm · Custom (C 70, W 80)"


def test_an_image_view_has_no_slice_slider_and_shows_small_images_larger() -> None:
    require_module("ipywidgets", "notebook")
    view = ImageView(TEST_FILES / "MR_small.dcm")
    assert view.kind == "image" and len(view) == 1
    ui = controls(view)
    assert "slice" not in ui and "cine" not in ui
    assert ui["image"].width == "256"  # 64 × 64 shown at 256 px
    assert ui["image"].value == view.png()


def test_an_image_view_of_one_frame() -> None:
    path = TEST_FILES / "examples_ybr_color.dcm"
    view = ImageView(path, frame=12)
    assert len(view) == 1 and view.slices[0].frame == 12
    assert np.array_equal(view.render(), px.display_array(pydicom.dcmread(path), 12))
    with pytest.raises(InputError, match="has 30 frames: there is no frame 31"):
        ImageView(path, frame=30)
    with pytest.raises(InputError, match="has 1 frame: there is no frame 2"):
        ImageView(TEST_FILES / "CT_small.dcm", frame=1)


def test_the_static_html_is_the_current_slice_with_its_caption(tmp_path: Path) -> None:
    view = StackView(write_series(tmp_path / "ct", 5), title="<b>Chest</b>", prefetch=0)
    page = view.html()
    assert "&lt;b&gt;Chest&lt;/b&gt;" in page and "<b>Chest</b>" not in page.replace("<b>&lt;", "")
    assert page.count("<img") == 1 and "slice 3/5" in page
    view.window = "lung"
    assert "Lung (C -600, W 1500)" in view.html()
    with pytest.raises(InputError, match="no window called 'liver'"):
        view.window = "liver"


def test_a_view_of_a_datasets_in_memory() -> None:
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    view = ImageView(ds)
    assert np.array_equal(view.render(), px.display_array(ds))


def test_views_of_catalog_records(sample_tree: Path) -> None:
    dicomnb.import_local(sample_tree)
    catalog = dicomnb.catalog
    ct = catalog.series.set_index("Modality").loc["CT", "SeriesInstanceUID"]
    records = catalog.series_records(ct)
    view = StackView(records)
    assert len(view) == 1 and view.render().shape == (128, 128)
    assert ImageView(records[0]).html().count("<img") == 1


# -- thumbnails -------------------------------------------------------------------------------------

def test_thumbnails_are_made_once_per_series(sample_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    thumbnail.forget_thumbnails()
    dicomnb.import_local(sample_tree)
    series = dicomnb.catalog.series.set_index("Modality")["SeriesInstanceUID"]
    decodes = []
    real = px.display_array
    monkeypatch.setattr(px, "display_array", lambda *a, **k: decodes.append(1) or real(*a, **k))
    png = thumbnail.thumbnail_png(series["CT"], 64)
    assert png.startswith(b"\x89PNG") and int.from_bytes(png[16:20], "big") == 64
    assert thumbnail.thumbnail_png(series["CT"], 64) is png
    assert thumbnail.thumbnail_png(series["CT"], 32) != png  # another size, from the same decoded frame
    figure = thumbnail.series_figure(series["CT"])
    assert figure.axes[0].get_title() == "CT (1 instance)"
    assert len(decodes) == 1
    # the frame is the pipeline's: 0..1 of the display values
    ds = pydicom.dcmread(sample_tree / "CT_small.dcm")
    assert np.array_equal(thumbnail.display_frame(series["CT"]), real(ds) / 255.0)
    # a series without pixels has no thumbnail
    assert thumbnail.thumbnail_png(series["RTPLAN"].iloc[0]) is None


def test_a_thumbnail_is_made_again_after_a_new_import(tmp_path: Path) -> None:
    thumbnail.forget_thumbnails()
    first = tmp_path / "a" / "ct.dcm"
    first.parent.mkdir()
    shutil.copy(TEST_FILES / "CT_small.dcm", first)
    dicomnb.import_local(first)
    uid = dicomnb.catalog.series["SeriesInstanceUID"][0]
    before = thumbnail.thumbnail_png(uid)
    dicomnb.catalog.clear()
    ds = pydicom.dcmread(first)
    ds.PhotometricInterpretation = "MONOCHROME1"  # the same series, seen inverted
    second = tmp_path / "b" / "ct.dcm"
    second.parent.mkdir()
    ds.save_as(second)
    dicomnb.import_local(second)
    after = thumbnail.thumbnail_png(uid)
    assert after != before
