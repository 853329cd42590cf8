"""Viewers benchmark: rendering a CT slice, scrolling a stack, building a volume; beside plain pydicom.

Writes a synthetic CT series of ``--slices`` (300) slices of 512 × 512 (a phantom: body,
lungs, spine, with noise; int16, rescale intercept -1024, window 40/400) with pydicom into a
temporary folder, three times: uncompressed (Explicit VR Little Endian), RLE Lossless and
JPEG 2000 Lossless (pydicom's encoders). Then, each measure given one untimed pass first and
the runs taken in turn (medians):

1. **render**: one slice through :class:`dicomnb.render.stack.StackView` (its decoded frame
   cached after the first render) with a new window each time, as a slider moves:
   ``view.png(index, center, width)`` (window, then PNG) and ``view.render(...)`` (the array
   alone); the first render of the slice (decode included) apart. The peer: the same slice
   decoded once with pydicom, then for each window pydicom's ``apply_modality_lut`` and
   ``apply_windowing`` and a matplotlib ``Figure`` (``imshow``, 512 × 512 pixels) saved as
   PNG. Also :class:`dicomnb.render.mpr.MprView`: its three planes re-rendered to PNG after a
   window change, and after a slider move. Target: < 50 ms for the slice.
2. **scroll**: a fresh ``StackView`` (neighbours decoded ahead in its background thread)
   scrolled through every slice at ``--pace`` steps a second (a person dragging the slider),
   then back through all of them as fast as they render, then ``--jumps`` random jumps; its
   ``decoded`` counter must end at one decode per slice. For the uncompressed and the JPEG 2000
   series (where a decode is slowest).
3. **volume**: :func:`dicomnb.core.volume.load_volume` (``strategy="auto"``, Hounsfield units
   in int16) against a plain pydicom loop (``dcmread`` every file, sort by position,
   ``np.stack`` the ``pixel_array``s: stored values, no rescale) and the same loop with
   ``apply_modality_lut`` (float64 HU); and each strategy forced (serial, threads, processes),
   which is how ``auto``'s choices were made. With the CPU each took: the CPU seconds of this
   process and its worker processes over the wall time (2.0 is both cores busy), and each
   core's busy share over the run. These runs are warm: the worker processes already run
   (``auto`` then uses them for RLE too). So each series is also read once by a fresh Python
   process (dicomnb and pydicom imported, nothing read yet): ``auto`` against the plain loop,
   ``--first-runs`` times each. Target: auto's time at most the plain loop's (ratio <= 1.0)
   for every series, warm and first, and both cores used (>= 1.6) where decoding dominates
   (JPEG 2000; an RLE slice takes about 1 ms, half of it reading the file and its header).

Writes ``results_viewers.json`` and the "Viewers" section of ``results.md`` (the other
sections are left as they are).

    .venv/bin/python benchmarks/bench_viewers.py [--runs 5] [--heavy-runs 3] [--first-runs 3] [--slices 300]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from results_file import publish  # benchmarks/, beside this script

HERE = Path(__file__).resolve().parent
SIZE = 512
TARGET_RENDER_MS = 50.0
TARGET_VOLUME_RATIO = 1.0
#: The series written, by name: (transfer syntax keyword, label)
VARIANTS = {
    "uncompressed": ("ExplicitVRLittleEndian", "Explicit VR Little Endian"),
    "rle": ("RLELossless", "RLE Lossless"),
    "j2k": ("JPEG2000Lossless", "JPEG 2000 Lossless"),
}


# -- the data ------------------------------------------------------------------------------------
def phantom(k: int, slices: int, rng: np.random.Generator) -> np.ndarray:
    """Stored values (HU + 1024) of slice ``k``: air, a body of soft tissue, two lungs and a spine."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    cy, cx = SIZE / 2, SIZE / 2
    grow = 1.0 + 0.1 * np.sin(np.pi * k / max(slices - 1, 1))  # the body widens towards the middle
    hu = np.full((SIZE, SIZE), -1000.0, dtype=np.float32)
    body = ((x - cx) / (200 * grow)) ** 2 + ((y - cy) / (150 * grow)) ** 2 <= 1
    hu[body] = 40
    for side in (-1, 1):
        lung = ((x - cx - side * 85) / 60) ** 2 + ((y - cy + 10) / 95) ** 2 <= 1
        hu[lung] = -820
    spine = (x - cx) ** 2 + (y - cy - 110) ** 2 <= 22**2
    hu[spine] = 700
    hu += rng.normal(0, 12, hu.shape).astype(np.float32) * body
    return np.clip(np.rint(hu + 1024), 0, 4095).astype(np.int16)


def write_series(folder: Path, syntax: str, slices: int) -> list[str]:
    """Write the series in ``syntax`` (a pydicom UID keyword); return the paths, shuffled."""
    import pydicom.uid
    from pydicom.dataset import Dataset, FileMetaDataset

    folder.mkdir(parents=True)
    uid = getattr(pydicom.uid, syntax)
    rng = np.random.default_rng(20261122)
    series, study = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    paths = []
    for k in range(slices):
        pixels = phantom(k, slices, rng)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientID, ds.PatientName, ds.Modality = "BENCH", "Bench^Viewers", "CT"
        ds.SeriesDescription = f"synthetic CT {syntax}"
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-250.0, -250.0, round(-400 + 1.25 * k, 4)]
        ds.PixelSpacing, ds.SliceThickness = [0.9765625, 0.9765625], 1.25
        ds.Rows = ds.Columns = SIZE
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = pixels.tobytes()
        if uid != pydicom.uid.ExplicitVRLittleEndian:
            ds.compress(uid, pixels)
        path = folder / f"CT{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(os.fspath(path))
    random.Random(7).shuffle(paths)  # the order a folder listing gives is no slice order
    return paths


def folder_mb(paths: list[str]) -> float:
    return round(sum(os.path.getsize(p) for p in paths) / 2**20, 1)


# -- CPU --------------------------------------------------------------------------------------------
class CpuMeter:
    """CPU seconds of this process and its children (the worker processes), and of each core."""

    def __init__(self) -> None:
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()

    def _tree(self) -> float:
        total = sum(self.me.cpu_times()[:2])
        for child in self.me.children(recursive=True):
            try:
                total += sum(child.cpu_times()[:2])
            except self.psutil.Error:  # a child that ended meanwhile
                pass
        return total

    def _cores(self) -> list[tuple[float, float]]:
        return [(c.user + c.system + c.nice + c.irq + c.softirq, c.idle + c.iowait)
                for c in self.psutil.cpu_times(percpu=True)]

    def run(self, function: Callable[[], Any]) -> tuple[float, float, list[float], Any]:
        """``(wall seconds, process-tree CPU seconds, busy share of each core, result)`` of ``function()``."""
        tree, cores = self._tree(), self._cores()
        start = time.perf_counter()
        result = function()
        wall = time.perf_counter() - start
        used = self._tree() - tree
        busy = []
        for (b0, i0), (b1, i1) in zip(cores, self._cores(), strict=True):
            span = (b1 - b0) + (i1 - i0)
            busy.append(round((b1 - b0) / span, 2) if span > 0 else 0.0)
        return wall, used, busy, result


def median(values: list[float]) -> float:
    return float(statistics.median(values))


# -- 1. render --------------------------------------------------------------------------------------
def windows(count: int) -> list[tuple[float, float]]:
    """The windows a slider passes through: centre and width moving, never the same twice in a row."""
    return [(40.0 + (i * 37) % 300 - 150, 400.0 + (i * 53) % 1200) for i in range(count)]


def peer_render(pixels: np.ndarray, ds: Any, center: float, width: float) -> bytes:
    """pydicom's Modality LUT and windowing, then a matplotlib figure of 512 × 512 pixels as PNG."""
    from matplotlib.figure import Figure
    from pydicom.pixels import apply_modality_lut, apply_windowing

    ds.WindowCenter, ds.WindowWidth = center, width
    shown = apply_windowing(apply_modality_lut(pixels, ds), ds)
    figure = Figure(figsize=(SIZE / 100, SIZE / 100), dpi=100)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(shown, cmap="gray")
    axes.set_axis_off()
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=100)
    return out.getvalue()


def bench_render(paths: list[str], runs: int, renders: int) -> dict[str, Any]:
    import pydicom

    from dicomnb.core.volume import load_volume
    from dicomnb.render.mpr import PLANES, MprView
    from dicomnb.render.stack import StackView

    figures: dict[str, list[float]] = {k: [] for k in ("first_ms", "png_ms", "array_ms", "peer_ms", "peer_first_ms",
                                                      "mpr_window_ms", "mpr_move_ms")}
    volume = load_volume(paths)
    steps = windows(renders)
    png_size = 0
    for run in range(runs + 1):  # run 0 is the untimed pass
        view = StackView(paths, prefetch=0)  # no background decoding: the render alone is timed
        index = len(view.slices) // 2 + run
        start = time.perf_counter()
        png_size = len(view.png(index))
        first = time.perf_counter() - start
        png, array = [], []
        for center, width in steps:
            start = time.perf_counter()
            view.png(index, center, width)
            png.append(time.perf_counter() - start)
            start = time.perf_counter()
            view.render(index, center, width)
            array.append(time.perf_counter() - start)
        view.close()
        # the peer, on the same slice
        source = view.sources[view.slices[index].source]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            ds = pydicom.dcmread(source)
            pixels = ds.pixel_array
            peer_render(pixels, ds, 40, 400)
            peer_first = time.perf_counter() - start
            peer = []
            for center, width in steps:
                start = time.perf_counter()
                peer_render(pixels, ds, center, width)
                peer.append(time.perf_counter() - start)
        mpr = MprView(volume)
        mpr_window, mpr_move = [], []
        for i, (center, width) in enumerate(steps[:max(renders // 4, 3)]):
            start = time.perf_counter()
            mpr.set_window((center, width))
            for plane in PLANES:
                mpr.png(plane)
            mpr_window.append(time.perf_counter() - start)
            start = time.perf_counter()
            mpr.move("axial", (mpr.index("axial") + 7 * (i + 1)) % volume.shape[0])
            for plane in PLANES:
                mpr.png(plane)
            mpr_move.append(time.perf_counter() - start)
        if run == 0:
            continue
        figures["first_ms"].append(first * 1000)
        figures["png_ms"].append(median(png) * 1000)
        figures["array_ms"].append(median(array) * 1000)
        figures["peer_first_ms"].append(peer_first * 1000)
        figures["peer_ms"].append(median(peer) * 1000)
        figures["mpr_window_ms"].append(median(mpr_window) * 1000)
        figures["mpr_move_ms"].append(median(mpr_move) * 1000)
        print(f"render run {run}/{runs}: png {figures['png_ms'][-1]:.1f} ms, array {figures['array_ms'][-1]:.1f} ms, "
              f"peer {figures['peer_ms'][-1]:.1f} ms, MPR 3 planes {figures['mpr_window_ms'][-1]:.1f} ms", flush=True)
    result: dict[str, Any] = {name: {"median": round(median(v), 2), "runs": [round(x, 2) for x in v]}
                              for name, v in figures.items()}
    result["renders_per_run"] = renders
    result["png_bytes"] = png_size
    result["mpr_shape"] = list(volume.shape)
    return result


# -- 2. scroll --------------------------------------------------------------------------------------
def bench_scroll(paths: list[str], pace: float, jumps: int) -> dict[str, Any]:
    from dicomnb.render.stack import StackView

    start = time.perf_counter()
    view = StackView(paths)
    opened = time.perf_counter() - start
    count = len(view.slices)
    forward, backward, jumped = [], [], []
    interval = 1.0 / pace
    try:
        for index in range(count):
            start = time.perf_counter()
            view.png(index)
            took = time.perf_counter() - start
            forward.append(took)
            time.sleep(max(0.0, interval - took))  # a person drags at `pace` slices a second
        after_forward = view.decoded
        for index in reversed(range(count)):
            start = time.perf_counter()
            view.png(index)
            backward.append(time.perf_counter() - start)
        rng = random.Random(11)
        for _ in range(jumps):
            index = rng.randrange(count)
            start = time.perf_counter()
            view.png(index)
            jumped.append(time.perf_counter() - start)
    finally:
        view.close()

    def spread(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        return {"median_ms": round(median(values) * 1000, 2),
                "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))] * 1000, 2),
                "max_ms": round(ordered[-1] * 1000, 2)}

    return {
        "slices": count,
        "renders": len(forward) + len(backward) + len(jumped),
        "decoded_after_forward": after_forward,
        "decoded": view.decoded,
        "open_s": round(opened, 3),
        "pace_per_s": pace,
        "forward": spread(forward),
        "backward": spread(backward),
        "jumps": spread(jumped),
    }


# -- 3. volume --------------------------------------------------------------------------------------
def plain_loop(paths: list[str]) -> np.ndarray:
    """What one writes with pydicom: read every file, sort by position, stack the pixel arrays."""
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        datasets = [pydicom.dcmread(p) for p in paths]
        datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
        return np.stack([ds.pixel_array for ds in datasets])


def plain_loop_hu(paths: list[str]) -> np.ndarray:
    """The same with pydicom's Modality LUT on each slice (Hounsfield units, float64)."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        datasets = [pydicom.dcmread(p) for p in paths]
        datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
        return np.stack([apply_modality_lut(ds.pixel_array, ds) for ds in datasets])


VOLUME_MEASURES = {
    "plain": "pydicom loop: dcmread, sort, np.stack(pixel_array)",
    "plain_hu": "pydicom loop + apply_modality_lut (float64 HU)",
    "auto": "dicomnb load_volume (auto)",
    "serial": "dicomnb load_volume, serial",
    "threads": "dicomnb load_volume, 2 threads",
    "processes": "dicomnb load_volume, 2 worker processes",
}


def bench_volume(paths: list[str], runs: int, meter: CpuMeter) -> dict[str, Any]:
    from dicomnb.core.volume import load_volume

    def dicomnb_measure(strategy: str) -> Callable[[], Any]:
        return lambda: load_volume(paths, strategy=strategy)  # type: ignore[arg-type]

    functions: dict[str, Callable[[], Any]] = {"plain": lambda: plain_loop(paths),
                                               "plain_hu": lambda: plain_loop_hu(paths)}
    for strategy in ("auto", "serial", "threads", "processes"):
        functions[strategy] = dicomnb_measure(strategy)
    samples: dict[str, list[tuple[float, float, list[float]]]] = {name: [] for name in functions}
    # the untimed pass: warms the page cache and the worker processes, and checks the values agree
    reference = plain_loop(paths)
    for name, function in functions.items():
        result = function()
        if name not in ("plain", "plain_hu"):
            assert np.array_equal(result.array, reference.astype(np.int32) - 1024), name
            assert result.array.dtype == np.int16, result.array.dtype
    del reference, result
    for run in range(1, runs + 1):
        for name, function in functions.items():
            wall, cpu, busy, _ = meter.run(function)
            samples[name].append((wall, cpu, busy))
        print(f"  volume run {run}/{runs}: " + ", ".join(f"{n} {samples[n][-1][0]:.2f} s" for n in functions),
              flush=True)
    out: dict[str, Any] = {}
    for name, values in samples.items():
        walls = [w for w, _, _ in values]
        middle = sorted(values, key=lambda v: v[0])[len(values) // 2]
        out[name] = {
            "label": VOLUME_MEASURES[name],
            "median_s": round(median(walls), 3),
            "runs_s": [round(w, 3) for w in walls],
            "ms_per_slice": round(median(walls) / len(paths) * 1000, 2),
            "cores_used": round(median([c / w for w, c, _ in values]), 2),
            "core_busy": middle[2],
        }
    return out


FIRST_CALL = """
import json, os, random, sys, time, warnings
sys.path.insert(0, {here!r})
import numpy, pydicom, dicomnb.core.volume
from bench_viewers import plain_loop
folder, mode = {folder!r}, {mode!r}
paths = [os.path.join(folder, n) for n in sorted(os.listdir(folder))]
random.Random(7).shuffle(paths)  # the order write_series gave
start = time.perf_counter()
if mode == "plain":
    plain_loop(paths)
else:
    dicomnb.core.volume.load_volume(paths)
print(json.dumps(time.perf_counter() - start))
"""


def bench_first_call(folder: Path, runs: int) -> dict[str, Any]:
    """The first read of the series by a fresh Python process: ``auto`` and the plain loop, in turn."""
    import subprocess

    seconds: dict[str, list[float]] = {"plain": [], "auto": []}
    for _ in range(runs):
        for mode in seconds:
            code = FIRST_CALL.format(here=str(HERE), folder=str(folder), mode=mode)
            out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
            seconds[mode].append(float(out.stdout.strip().splitlines()[-1]))
    return {mode: {"median_s": round(median(v), 3), "runs_s": [round(x, 3) for x in v]} for mode, v in seconds.items()}


# -- report -----------------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def summarise(render: dict[str, Any], scrolls: dict[str, Any], volumes: dict[str, Any], sizes: dict[str, float],
              options: argparse.Namespace) -> dict[str, Any]:
    import matplotlib
    import pydicom

    import dicomnb

    targets: dict[str, Any] = {
        "render": {"label": "re-render of a 512 × 512 CT slice with a new window, to PNG (StackView.png)",
                   "value": render["png_ms"]["median"], "unit": "ms", "target": f"< {TARGET_RENDER_MS:g} ms",
                   "verdict": verdict(render["png_ms"]["median"] < TARGET_RENDER_MS)},
    }
    for name, scroll in scrolls.items():
        targets[f"scroll_{name}"] = {
            "label": f"scrolling the {scroll['slices']}-slice {VARIANTS[name][1]} stack: decodes in "
                     f"{scroll['renders']} renders", "value": scroll["decoded"], "unit": "decodes",
            "target": f"= {scroll['slices']} (each slice once)",
            "verdict": verdict(scroll["decoded"] == scroll["slices"])}
    for name, volume in volumes.items():
        ratio = volume["auto"]["median_s"] / volume["plain"]["median_s"]
        targets[f"volume_{name}"] = {
            "label": f"load_volume / pydicom loop, {VARIANTS[name][1]} (time ratio)", "value": round(ratio, 2),
            "unit": "x", "target": f"<= {TARGET_VOLUME_RATIO:g}", "verdict": verdict(ratio <= TARGET_VOLUME_RATIO)}
        first = volume["first"]["auto"]["median_s"] / volume["first"]["plain"]["median_s"]
        targets[f"volume_first_{name}"] = {
            "label": f"the same, first read by a fresh process, {VARIANTS[name][1]} (time ratio)",
            "value": round(first, 2), "unit": "x", "target": f"<= {TARGET_VOLUME_RATIO:g}",
            "verdict": verdict(first <= TARGET_VOLUME_RATIO)}
        if name == "j2k":  # where decoding dominates (an RLE slice: half reading, half decoding)
            cores = volume["auto"]["cores_used"]
            targets[f"cores_{name}"] = {
                "label": f"cores used building the {VARIANTS[name][1]} volume (decoding dominates)",
                "value": cores, "unit": "cores", "target": ">= 1.6 (of 2)", "verdict": verdict(cores >= 1.6)}
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "pydicom": pydicom.__version__,
                    "numpy": np.__version__, "matplotlib": matplotlib.__version__, "dicomnb": dicomnb.__version__,
                    "workers": dicomnb.settings.workers, "platform": platform.platform()},
        "slices": options.slices, "runs": options.runs, "heavy_runs": options.heavy_runs,
        "first_runs": options.first_runs,
        "series_mb": sizes,
        "render": render, "scroll": scrolls, "volume": volumes, "targets": targets,
    }


def to_markdown(results: dict[str, Any]) -> str:
    machine, render = results["machine"], results["render"]
    slices = results["slices"]
    sizes = ", ".join(f"{VARIANTS[n][1]} {mb} MB" for n, mb in results["series_mb"].items())
    lines = [
        "# Viewers benchmark results",
        "",
        "Written by `benchmarks/bench_viewers.py` (figures in `results_viewers.json`; see README.md, Viewers).",
        "",
        f"- Date: {results['date']}",
        f"- Machine: {machine['nproc']} CPUs, {machine['workers']} dicomnb worker processes, Python "
        f"{machine['python']}, pydicom {machine['pydicom']}, numpy {machine['numpy']}, matplotlib "
        f"{machine['matplotlib']}, dicomnb {machine['dicomnb']}, {machine['platform']}",
        f"- Series: {slices} synthetic CT slices of 512 × 512 (int16, a phantom with noise) written with pydicom "
        f"into a temporary folder, in a shuffled order: {sizes}. Warm page cache (an untimed pass of each "
        "measure first), then the runs in turn; medians.",
        "",
        "## 1. Rendering a slice",
        "",
        f"One 512 × 512 slice, {render['renders_per_run']} re-renders a run, each with another window; "
        f"{results['runs']} runs (the figure of a run is its median re-render).",
        "",
        "| measure | median (ms) | each run (ms) |",
        "|---|---:|---|",
    ]
    rows = [
        ("png_ms", "dicomnb `StackView.png(index, center, width)`: window + PNG (uncompressed series)"),
        ("array_ms", "dicomnb `StackView.render(...)`: window only (uint8 array)"),
        ("first_ms", "dicomnb first render of the slice: read, decode, window, PNG"),
        ("peer_ms", "pydicom `apply_modality_lut` + `apply_windowing` + matplotlib `Figure` to PNG (pixels decoded once)"),
        ("peer_first_ms", "the same, first: `dcmread` + `pixel_array` included"),
        ("mpr_window_ms", f"dicomnb `MprView`: the 3 planes of the {'×'.join(map(str, render['mpr_shape']))} "
                          "volume to PNG after a window change"),
        ("mpr_move_ms", "dicomnb `MprView`: a slider moved (the crosshair), the 3 planes to PNG"),
    ]
    for key, label in rows:
        figure = render[key]
        lines.append(f"| {label} | {figure['median']:.1f} | {', '.join(f'{v:.1f}' for v in figure['runs'])} |")
    peer_ratio = render["peer_ms"]["median"] / render["png_ms"]["median"]
    lines += ["", f"A re-render takes {render['png_ms']['median']:.1f} ms, {peer_ratio:.1f}× faster than the "
                  f"pydicom + matplotlib peer; its PNG is {render['png_bytes'] / 1024:.0f} kB.", ""]
    lines += ["## 2. Scrolling a stack", "",
              "A fresh `StackView` (3 neighbours each side decoded ahead by its background thread): every slice "
              "forward at a person's pace, then back as fast as they render, then random jumps.", "",
              "| series | renders | decodes | open (s) | forward: median / p95 / max (ms) | back | jumps |",
              "|---|---:|---:|---:|---|---|---|"]
    for name, scroll in results["scroll"].items():
        def cell(part: dict[str, float]) -> str:
            return f"{part['median_ms']:.1f} / {part['p95_ms']:.1f} / {part['max_ms']:.1f}"

        lines.append(f"| {VARIANTS[name][1]}, forward at {scroll['pace_per_s']:g}/s | {scroll['renders']} | "
                     f"{scroll['decoded']} ({scroll['decoded_after_forward']} after the forward pass) | "
                     f"{scroll['open_s']:.2f} | {cell(scroll['forward'])} | {cell(scroll['backward'])} | "
                     f"{cell(scroll['jumps'])} |")
    lines += ["", "## 3. Building a volume", "",
              f"{results['runs']} runs ({results['heavy_runs']} for JPEG 2000). \"Cores\": CPU seconds of the "
              "process and its worker processes over the wall time (2.00 = both cores busy); \"busy\": each "
              "core's busy share over the median run.", "",
              "| series | measure | median (s) | ms/slice | vs plain loop | cores | busy | each run (s) |",
              "|---|---|---:|---:|---:|---:|---|---|"]
    for name, volume in results["volume"].items():
        plain = volume["plain"]["median_s"]
        for key, figure in volume.items():
            if key == "first":
                continue
            lines.append(f"| {VARIANTS[name][1]} | {figure['label']} | {figure['median_s']:.3f} | "
                         f"{figure['ms_per_slice']:.2f} | {figure['median_s'] / plain:.2f}x | {figure['cores_used']:.2f} | "
                         f"{', '.join(f'{b:.0%}' for b in figure['core_busy'])} | "
                         f"{', '.join(f'{r:.3f}' for r in figure['runs_s'])} |")
    lines += ["", f"The first read of each series by a fresh Python process (dicomnb and pydicom imported, nothing "
                  f"read yet; the worker processes not started), {results['first_runs']} runs each way, in turn:", "",
              "| series | dicomnb load_volume (auto), s | pydicom loop, s | ratio | each run, auto / loop (s) |",
              "|---|---:|---:|---:|---|"]
    for name, volume in results["volume"].items():
        first = volume["first"]
        runs = "; ".join(f"{a:.2f} / {b:.2f}" for a, b in zip(first["auto"]["runs_s"], first["plain"]["runs_s"], strict=True))
        lines.append(f"| {VARIANTS[name][1]} | {first['auto']['median_s']:.3f} | {first['plain']['median_s']:.3f} | "
                     f"{first['auto']['median_s'] / first['plain']['median_s']:.2f}x | {runs} |")
    lines += ["", "## Targets", "", "| target | measured | target | verdict |", "|---|---:|---|---|"]
    for target in results["targets"].values():
        lines.append(f"| {target['label']} | {target['value']} {target['unit']} | {target['target']} | "
                     f"{target['verdict']} |")
    overall = all(t["verdict"] == "PASS" for t in results["targets"].values())
    lines += ["", f"Overall: {verdict(overall)}.", ""]
    return "\n".join(lines)


# -- command line -----------------------------------------------------------------------------------
def _setup_argparser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each measure (default 5)")
    parser.add_argument("--heavy-runs", type=int, default=3,
                        help="timed runs of the JPEG 2000 volume measures (default 3: about 40 s a run)")
    parser.add_argument("--first-runs", type=int, default=3,
                        help="reads of each series by a fresh process, each way (default 3)")
    parser.add_argument("--slices", type=int, default=300, help="slices of each series (default 300)")
    parser.add_argument("--renders", type=int, default=40, help="re-renders in one render run (default 40)")
    parser.add_argument("--pace", type=float, default=20.0, help="slices a second of the forward scroll (default 20)")
    parser.add_argument("--jumps", type=int, default=100, help="random jumps after the scroll (default 100)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"series to write and time (default {','.join(VARIANTS)})")
    parser.add_argument("--out", type=Path, default=HERE, help="where results.md and results_viewers.json go")
    return parser


def main(args: list[str] | None = None) -> int:
    parser = _setup_argparser()
    options = parser.parse_args(args)
    variants = [v for v in options.variants.split(",") if v]
    if options.runs < 1 or options.heavy_runs < 1 or options.first_runs < 1 or options.slices < 16 or not set(variants) <= set(VARIANTS) \
            or "uncompressed" not in variants:
        parser.error(f"--runs, --heavy-runs and --first-runs at least 1, --slices at least 16, --variants among "
                     f"{', '.join(VARIANTS)} with uncompressed")
    meter = CpuMeter()
    root = Path(tempfile.mkdtemp(prefix="dicomnb-bench-viewers-"))
    try:
        series: dict[str, list[str]] = {}
        for name in variants:
            start = time.perf_counter()
            series[name] = write_series(root / name, VARIANTS[name][0], options.slices)
            print(f"wrote {options.slices} {VARIANTS[name][1]} slices ({folder_mb(series[name])} MB) in "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
        print("1. render ...", flush=True)
        render = bench_render(series["uncompressed"], options.runs, options.renders)
        print("2. scroll ...", flush=True)
        scrolls = {name: bench_scroll(series[name], options.pace, options.jumps)
                   for name in ("uncompressed", "j2k") if name in series}
        for name, scroll in scrolls.items():
            print(f"  {name}: {scroll['decoded']} decodes for {scroll['renders']} renders of {scroll['slices']} slices",
                  flush=True)
        print("3. volume ...", flush=True)
        volumes = {}
        for name in variants:
            print(f" {VARIANTS[name][1]}", flush=True)
            volumes[name] = bench_volume(series[name], options.heavy_runs if name == "j2k" else options.runs, meter)
            volumes[name]["first"] = bench_first_call(root / name, options.first_runs)
            print(f"  first read in a fresh process: auto {volumes[name]['first']['auto']['median_s']:.2f} s, "
                  f"plain {volumes[name]['first']['plain']['median_s']:.2f} s", flush=True)
        sizes = {name: folder_mb(paths) for name, paths in series.items()}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results = summarise(render, scrolls, volumes, sizes, options)
    publish(options.out, "results_viewers.json", results, to_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
