"""MPR: the three planes of a synthetic volume of known geometry put its markers where they are."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import TEST_FILES, require_module
from pydicom.pixels import apply_voi_lut
from test_volume import patient_position, strs, write_series

from dicomnb.core.errors import InputError
from dicomnb.core.volume import NotAVolume, Volume, load_volume
from dicomnb.render.mpr import PLANES, MprView, crosshair, layout, plane_axes, reformat
from dicomnb.render.pixels import apply_window

MARKER = (23, 31, 9)  # slice, row, column
# Further markers, one step from MARKER along each patient axis (an axial series: +x is along
# the rows, +y down the columns, +z from slice to slice)
LEFT = (23, 31, 40)  # +x: the patient's left
POSTERIOR = (23, 44, 9)  # +y: towards the back
HEAD = (35, 31, 9)  # +z: towards the head


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """40 axial slices 2.5 mm apart of 48 × 64 pixels of 0.8 × 0.6 mm, shuffled, with four markers."""
    folder = tmp_path_factory.mktemp("mpr")
    markers = {MARKER: 3000, LEFT: 2600, POSTERIOR: 2200, HEAD: 1800}
    return strs(write_series(folder, markers=markers))


@pytest.fixture(scope="module")
def view(series: list[str]) -> MprView:
    return MprView(series)


def brightest(image: np.ndarray) -> tuple[int, int]:
    row, column = np.unravel_index(int(np.argmax(image)), image.shape)
    return int(row), int(column)


def test_the_marker_lands_at_the_crosshair_in_all_three_planes(view: MprView) -> None:
    view.set_point(patient=patient_position(MARKER))  # the marker's patient position, in mm
    assert view.point == MARKER
    np.testing.assert_allclose(view.patient_point, patient_position(MARKER), atol=1e-6)
    for plane, (index, (row, column)) in crosshair(view.volume, view.point).items():
        cut = view.reformat(plane)
        assert cut.index == index
        assert brightest(cut.pixels) == (round(row), round(column)), plane
        assert cut.pixels.max() == 3000 - 1024
        assert np.array_equal(cut.to_voxel(row, column), MARKER)


def test_the_planes_read_as_on_a_radiological_viewer(view: MprView) -> None:
    """The patient's left on the right of axial and coronal, anterior on top of axial, the head on
    top of coronal and sagittal, posterior on the right of sagittal: found with the markers."""
    def place(plane: str, voxel: tuple[int, int, int]) -> tuple[float, float]:
        return layout(view.volume, plane).from_voxel(voxel)

    for plane in ("axial", "coronal"):
        assert place(plane, LEFT)[1] > place(plane, MARKER)[1]  # left is to the right
        assert layout(view.volume, plane).labels["right"] == "L"
        assert layout(view.volume, plane).labels["left"] == "R"
    assert place("axial", POSTERIOR)[0] > place("axial", MARKER)[0]  # posterior is down
    assert layout(view.volume, "axial").labels == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    for plane in ("coronal", "sagittal"):
        assert place(plane, HEAD)[0] < place(plane, MARKER)[0]  # the head is up
        assert (layout(view.volume, plane).labels["top"], layout(view.volume, plane).labels["bottom"]) == ("H", "F")
    assert place("sagittal", POSTERIOR)[1] > place("sagittal", MARKER)[1]
    assert layout(view.volume, "sagittal").labels == {"top": "H", "bottom": "F", "left": "A", "right": "P"}
    # and the pixels agree: each marker is in its cut where the layout says
    for voxel, value in ((LEFT, 2600), (POSTERIOR, 2200), (HEAD, 1800)):
        view.set_point(voxel)
        for plane in PLANES:
            row, column = place(plane, voxel)
            assert view.reformat(plane).pixels[round(row), round(column)] == value - 1024, (voxel, plane)


@pytest.mark.parametrize("iop", [(-1, 0, 0, 0, -1, 0), (0, 1, 0, 0, 0, -1), (1, 0, 0, 0, 0, -1)],
                         ids=["axial-prone", "sagittal", "coronal"])
def test_any_acquisition_reads_the_same_way(tmp_path: Path, iop: tuple[float, ...]) -> None:
    """Markers placed by patient direction land on the screen side a radiologist expects, whatever
    the direction of the rows, the columns and the slices (here each of them runs backwards once)."""
    paths = write_series(tmp_path / "s", slices=24, rows=40, columns=40, spacing=(1.0, 1.0), gap=1.0, iop=iop)
    volume = load_volume(strs(paths))
    centre = volume.voxel_to_patient((12, 20, 20))
    step = {"L": (8, 0, 0), "P": (0, 8, 0), "H": (0, 0, 8)}
    where = {name: np.rint(volume.patient_to_voxel(centre + np.array(d))).astype(int) for name, d in step.items()}
    array = volume.array.copy()
    array[tuple(where["L"])], array[tuple(where["P"])], array[tuple(where["H"])] = 3000, 2000, 1000
    array[12, 20, 20] = 500
    view = MprView(Volume(array, origin=volume.origin, row_direction=volume.row_direction,
                          column_direction=volume.column_direction, spacing=volume.spacing))

    def screen(plane: str, name: str, value: int) -> tuple[int, int]:
        view.set_point(where[name] if name in where else (12, 20, 20))
        found = np.argwhere(view.reformat(plane).pixels == value)
        assert len(found) == 1, (plane, name)
        return int(found[0][0]), int(found[0][1])

    for plane in PLANES:
        row, column = screen(plane, "centre", 500)
        if plane in ("axial", "coronal"):
            assert screen(plane, "L", 3000)[1] > column, plane  # the patient's left on the right
        if plane == "axial":
            assert screen(plane, "P", 2000)[0] > row  # posterior down, anterior up
        else:
            assert screen(plane, "H", 1000)[0] < row, plane  # the head up
        if plane == "sagittal":
            assert screen(plane, "P", 2000)[1] > column  # posterior on the right
        view.set_point(where["L"])
        view.click(plane, *screen(plane, "L", 3000))  # a click on a marker puts the crosshair on it
        assert view.point == tuple(where["L"]), plane
    labels = {plane: layout(volume, plane).labels for plane in PLANES}
    assert labels["axial"] == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    assert labels["coronal"] == {"top": "H", "bottom": "F", "left": "R", "right": "L"}
    assert labels["sagittal"] == {"top": "H", "bottom": "F", "left": "A", "right": "P"}


def test_planes_are_shown_with_square_pixels_from_the_spacing(view: MprView) -> None:
    # 40 slices 2.5 mm apart = 100 mm high; 48 rows of 0.8 = 38.4 mm; 64 columns of 0.6 = 38.4 mm
    extents = {"axial": (38.4, 38.4), "coronal": (100.0, 38.4), "sagittal": (100.0, 38.4)}
    for plane in PLANES:
        image = view.render(plane)
        assert image.dtype == np.uint8 and image.shape[2] == 3
        height, width = extents[plane]
        assert image.shape[0] / image.shape[1] == pytest.approx(height / width, rel=0.03), plane


def test_moving_the_point_in_one_plane_moves_the_others(view: MprView) -> None:
    view.set_point((0, 0, 0))
    view.click("axial", *layout(view.volume, "axial").from_voxel(MARKER)[:2])  # on the marker's row/column...
    assert view.point[1:] == MARKER[1:] and view.point[0] == 0  # ...of slice 0, whose cut the axial shows
    assert view.index("coronal") == MARKER[1] and view.index("sagittal") == MARKER[2]
    view.move("axial", MARKER[0])
    assert view.point == MARKER
    row, column = layout(view.volume, "coronal").from_voxel(MARKER)
    assert brightest(view.reformat("coronal").pixels) == (round(row), round(column))
    # the crosshair's lines: in the axial plane, the coronal line along a row, the sagittal one down a column
    image = view.render("axial")
    green, yellow = np.array([60, 200, 90]), np.array([240, 200, 40])
    on_row = np.all(image == green, axis=2)
    on_column = np.all(image == yellow, axis=2)
    row_at = int(np.argmax(on_row.sum(axis=1)))
    column_at = int(np.argmax(on_column.sum(axis=0)))
    row, column = layout(view.volume, "axial").from_voxel(MARKER)
    assert abs(row_at - (row + 0.5) * image.shape[0] / 48) <= 1  # rows are stretched 0.8/0.6
    assert abs(column_at - (column + 0.5) * image.shape[1] / 64) <= 1


def test_an_oblique_volume_still_puts_its_marker_at_the_crosshair(tmp_path: Path) -> None:
    angle = np.radians(30)
    iop = (np.cos(angle), np.sin(angle), 0.0, -np.sin(angle), np.cos(angle), 0.0)  # turned 30° about z
    marker = (10, 20, 40)
    paths = write_series(tmp_path / "oblique", slices=16, iop=iop, markers={marker: 3000})
    view = MprView(strs(paths))
    view.set_point(patient=patient_position(marker, iop=iop))
    assert view.point == marker
    for plane, (_, (row, column)) in crosshair(view.volume, view.point).items():
        assert brightest(view.reformat(plane).pixels) == (round(row), round(column)), plane
    # the rows run 30° from x towards y: the axial's right side is left and a little posterior
    assert layout(view.volume, "axial").labels["right"] == "LP"
    assert layout(view.volume, "axial").labels["left"] == "RA"


def test_a_sagittal_acquisition_is_cut_axially_across_its_rows(tmp_path: Path) -> None:
    iop = (0, 1, 0, 0, 0, -1)  # rows towards posterior, columns towards the feet: sagittal slices
    marker = (5, 12, 30)
    paths = write_series(tmp_path / "sagittal", slices=10, iop=iop, markers={marker: 3000})
    volume = load_volume(strs(paths))
    assert plane_axes(volume) == {"axial": 1, "coronal": 2, "sagittal": 0}
    head = patient_position((5, 2, 30), iop=iop)
    assert head[2] > patient_position(marker, iop=iop)[2]  # row 2 is above row 12
    view = MprView(volume)
    view.set_point(marker)
    for plane, (_, (row, column)) in crosshair(volume, marker).items():
        assert brightest(view.reformat(plane).pixels) == (round(row), round(column)), plane
    assert layout(volume, "sagittal").labels == {"top": "H", "bottom": "F", "left": "A", "right": "P"}


def test_the_axial_cut_of_an_axial_series_is_the_slice_as_pydicom_windows_it(series: list[str]) -> None:
    view = MprView(series)
    ds = pydicom.dcmread(series[0])
    k = round((float(ds.ImagePositionPatient[2]) - 30) / 2.5)
    view.set_point((k, 0, 0))
    shown = view.render("axial", crosshair=False)[..., 0]
    values = pydicom.pixels.apply_modality_lut(ds.pixel_array, ds)
    windowed = np.asarray(apply_voi_lut(values, ds), dtype=np.float64)  # window 40/400
    # pydicom's output range: the stored range (signed 16 bits) through the rescale
    low, high = -(2**15) * 1.0 - 1024, (2**15 - 1) * 1.0 - 1024
    expected = (windowed - low) / (high - low) * 255
    # the axial shows 48 rows of 0.8 mm and 64 columns of 0.6 mm: rows are repeated 4 in 3
    rows = (np.arange(shown.shape[0]) * 48) // shown.shape[0]
    np.testing.assert_allclose(shown, expected[rows], atol=1.0)


def test_the_window_is_shared_and_presets_offer_the_ct_windows(view: MprView) -> None:
    names = [p.name for p in view.presets()]
    assert names[0] == "File window" and {"Lung", "Bone", "Brain", "Abdomen", "Min/max"} <= set(names)
    view.set_window("lung")
    for plane in PLANES:
        cut = view.reformat(plane)
        expected = apply_window(cut.pixels, -600, 1500)
        shown = view.render(plane, crosshair=False)[..., 0]
        assert shown.shape[1] == expected.shape[1]
        assert set(np.unique(shown)) == set(np.unique(expected)), plane
    view.set_window((50, 350))
    assert view.window.name == "Custom" and "C 50, W 350" in view.caption()
    with pytest.raises(InputError, match="no window called"):
        view.set_window("liver")
    view.set_window("File window")


def test_the_static_html_has_the_three_planes_labelled_and_needs_no_kernel(view: MprView) -> None:
    view.set_point(MARKER)
    page = view.html()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3
    for data, plane in zip(images, PLANES, strict=True):
        assert base64.b64decode(data) == view.png(plane)
    for side in ("R", "L", "A", "P", "H", "F"):
        assert f">{side}<" in page or f">{side}&nbsp;<" in page or f">&nbsp;{side}<" in page
    assert "Axial 24/40" in page and "Coronal 32/48" in page and "Sagittal 10/64" in page
    assert f"voxel {MARKER}" in page and "value 1976" in page
    bundle = view._repr_mimebundle_()
    assert bundle["text/html"] == page


def test_reformat_refuses_what_is_outside() -> None:
    volume = Volume(np.zeros((3, 4, 5), np.int16))
    with pytest.raises(InputError, match="cuts 0 to 2"):
        reformat(volume, "axial", 3)
    with pytest.raises(InputError, match="no plane"):
        reformat(volume, "oblique", 0)


def test_a_volume_made_from_an_array_shows_with_an_automatic_window() -> None:
    array = np.zeros((6, 8, 10), np.float32)
    array[2, 3, 4] = 1.5  # a dose of 1.5 Gy, say: small values must not be thresholded
    view = MprView(Volume(array, spacing=(2.0, 1.0, 1.0)))
    assert view.window.name == "Auto" or view.window.name == "Min/max"
    view.set_point((2, 3, 4))
    assert view.render("axial", crosshair=False).max() == 255
    assert "<img" in view.html()


def test_rt_dose_frames_show_in_mpr() -> None:
    view = MprView(os.fspath(TEST_FILES / "rtdose.dcm"))
    assert view.volume.shape == (15, 10, 10)
    assert [p.name for p in view.presets()][:2] == ["Auto", "Min/max"]
    assert "dicomnb-error" not in view.html()


def test_what_is_no_volume_is_a_typed_error() -> None:
    with pytest.raises(NotAVolume, match="one image"):
        MprView(TEST_FILES / "CT_small.dcm")


def test_the_widget_moves_the_crosshair_and_shares_the_window(series: list[str]) -> None:
    require_module("ipywidgets", "notebook")
    view = MprView(series)
    box = view.widget()
    assert view.widget() is box
    controls = box  # the VBox: title, the planes, window, caption, notes, status
    planes = controls.children[1].children
    images = {plane: column.children[0] for plane, column in zip(PLANES, planes, strict=True)}
    sliders = {plane: column.children[1] for plane, column in zip(PLANES, planes, strict=True)}
    before = {plane: image.value for plane, image in images.items()}
    sliders["sagittal"].value = MARKER[2]  # the sagittal slider moves the point across the columns
    assert view.point[2] == MARKER[2]
    assert images["sagittal"].value != before["sagittal"]  # another cut
    assert images["axial"].value != before["axial"]  # its line moved
    assert images["axial"].value == view.png("axial")
    presets, centre, width = controls.children[2].children
    names = [label for label, _ in presets.options]
    presets.value = names.index(next(n for n in names if n.startswith("Bone")))
    assert (centre.value, width.value) == (400, 1800) and view.window.name == "Bone"
    centre.value = 100
    assert view.window.name == "Custom" and presets.value is None
    assert "C 100" in controls.children[3].value
