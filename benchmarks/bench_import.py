"""Time dicomnb's import core against a plain pydicom loop and the I/O floor.

Usage::

    python benchmarks/bench_import.py [--files 10000] [--runs 5] [--data DIR] [--only folder]

The first run generates a tree of files from pydicom's CT_small.dcm and MR_small.dcm (fresh
Study/Series/SOP Instance UIDs, 100 series, 5% non-DICOM files, names with and without
extension) and a deflated ZIP of it under ``--data``; later runs reuse them. Then, with a
warm page cache (one untimed pass of each measure first) and the measures interleaved, it
times ``--runs`` runs of:

- ``dicomnb``: ``dicomnb.import_local(tree)`` into an emptied catalog;
- ``pydicom``: ``pydicom.dcmread(path, stop_before_pixels=True, force=True)`` on every file,
  in one process (the reference loop);
- ``floor``: walking the tree and reading the first 4 KB of every file (the I/O floor);
- ``zip``: ``dicomnb.import_zip`` of the same tree as a deflated ZIP, first import (dicomnb's
  cache emptied before each run, so every entry is inflated and landed);
- ``zip_reimport``: the same archive again (its entries already in the cache);

and, in a separate process, the peak resident memory of a catalog of 100,000 instances with
its ``instances`` and ``series`` DataFrames built. It prints a table and writes
``results.md`` and ``results.json`` next to this script.

With ``--only folder`` it times only the first three (the folder import, the pydicom loop and
the floor), prints them with their two ratios, and writes no results file: a quick check of
a change to the import core.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import statistics
import struct
import subprocess
import sys
import time
import uuid
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from results_file import write_section  # benchmarks/, the folder of this script

HERE = Path(__file__).resolve().parent
SERIES = 100
PATIENTS = 20
STUDIES = 40
NON_DICOM_FRACTION = 0.05
RSS_INSTANCES = 100_000
FLOOR_BYTES = 4096

# Targets of the import core on a 2-core machine.
TARGET_VS_PYDICOM = 10.0  # at least this many times the pydicom loop's files/s
TARGET_VS_FLOOR = 4.0  # at most this many times the floor's time
TARGET_ZIP_VS_FOLDER = 0.5  # the ZIP at least at this fraction of the folder's files/s
TARGET_RSS_MB = 250.0  # peak RSS of a process holding 100,000 instances


# -- the data ------------------------------------------------------------------------------
def _uid() -> str:
    # What pydicom.uid.generate_uid(prefix=None) makes, without its hashing.
    return f"2.25.{uuid.uuid4().int}"


def _png(width: int, height: int, rng: random.Random) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + rng.randbytes(width * 3) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def _dicom_name(index: int) -> str:
    # Mostly ".dcm"; one in ten without extension, one in ten ".IMA", one in ten ".DCM".
    stem = f"IM{index:05d}"
    return {7: stem, 8: stem + ".IMA", 9: stem + ".DCM"}.get(index % 10, stem + ".dcm")


def _other_file(index: int, rng: random.Random) -> tuple[str, bytes]:
    kind = index % 4
    if kind == 0:
        return f"notes{index:04d}.txt", b"Acquisition notes, not DICOM.\n" * rng.randint(1, 40)
    if kind == 1:
        return f"README{index:04d}", b"A text file without extension.\n" * rng.randint(1, 40)
    if kind == 2:
        return f"snapshot{index:04d}.png", _png(16, 16, rng)
    return f"blob{index:04d}" + ("" if index % 8 == 3 else ".bin"), rng.randbytes(rng.randint(16, 20000))


def _spread(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def generate_tree(tree: Path, files: int) -> dict[str, Any]:
    """Write ``files`` files below ``tree`` (see the module docstring); return its manifest."""
    import pydicom
    from pydicom.data import get_testdata_file

    others = round(files * NON_DICOM_FRACTION)
    dicoms = files - others
    templates = {
        modality: pydicom.dcmread(get_testdata_file(name))  # type: ignore[arg-type]
        for modality, name in (("CT", "CT_small.dcm"), ("MR", "MR_small.dcm"))
    }
    rng = random.Random(20240501)
    if tree.exists():
        shutil.rmtree(tree)
    study_uids = [_uid() for _ in range(STUDIES)]
    other_index = 0
    for series, (count, extra) in enumerate(zip(_spread(dicoms, SERIES), _spread(others, SERIES), strict=True)):
        study = series * STUDIES // SERIES
        patient = study * PATIENTS // STUDIES
        modality = "CT" if study % 2 == 0 else "MR"
        ds = templates[modality]
        folder = tree / f"PAT{patient:03d}" / f"STUDY{study:03d}" / f"SERIES{series:03d}"
        folder.mkdir(parents=True)
        ds.PatientID = f"BENCH{patient:03d}"
        ds.PatientName = f"Bench^Patient{patient:03d}"
        ds.StudyInstanceUID = study_uids[study]
        ds.StudyDescription = f"Benchmark study {study}"
        ds.SeriesInstanceUID = _uid()
        ds.SeriesNumber = series + 1
        ds.SeriesDescription = f"{modality} series {series}"
        for number in range(1, count + 1):
            sop = _uid()
            ds.SOPInstanceUID = sop
            ds.file_meta.MediaStorageSOPInstanceUID = sop
            ds.InstanceNumber = number
            ds.save_as(folder / _dicom_name(number), enforce_file_format=True)
        for _ in range(extra):
            name, data = _other_file(other_index, rng)
            (folder / name).write_bytes(data)
            other_index += 1
    return {"files": files, "dicom": dicoms, "other": others, "series": SERIES,
            "studies": STUDIES, "patients": PATIENTS}


def _manifest_path(tree: Path) -> Path:
    # Beside the tree, not in it: the tree holds exactly the files that are timed.
    return tree.with_name(tree.name + ".json")


def _complete(tree: Path, files: int) -> dict[str, Any] | None:
    try:
        manifest: dict[str, Any] = json.loads(_manifest_path(tree).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("files") != files or not tree.is_dir():
        return None
    return manifest if sum(1 for _ in walk(tree)) == files else None


def build_zip(tree: Path, archive: Path) -> None:
    """Write the tree as a deflated ZIP (to a temporary name first: a half-written ZIP is never reused)."""
    partial = archive.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(walk(tree)):
            zf.write(path, os.path.relpath(path, tree.parent))
    partial.replace(archive)


def prepare(data: Path, files: int) -> tuple[Path, Path, dict[str, Any]]:
    """Return the tree, its ZIP and the manifest, generating what is missing."""
    tree = data / f"tree-{files}"
    archive = data / f"tree-{files}.zip"
    manifest = _complete(tree, files)
    if manifest is None:
        _manifest_path(tree).unlink(missing_ok=True)
        print(f"generating {files} files in {tree} ...", flush=True)
        start = time.perf_counter()
        if archive.exists():
            archive.unlink()
        manifest = generate_tree(tree, files)
        # Written last: a tree whose generation was interrupted is never reused.
        _manifest_path(tree).write_text(json.dumps(manifest))
        print(f"  {time.perf_counter() - start:.1f} s", flush=True)
    if not archive.exists():
        print(f"writing {archive} ...", flush=True)
        build_zip(tree, archive)
    return tree, archive, manifest


# -- the measures --------------------------------------------------------------------------
def walk(folder: Path | str) -> Iterator[str]:
    """Yield every regular file below ``folder`` (os.scandir, like any importer would)."""
    stack = [os.fspath(folder)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file():
                    yield entry.path


@dataclass
class Measure:
    """One timed figure: ``run`` is timed, ``setup`` (untimed) comes before each run."""

    name: str
    label: str
    run: Callable[[], None]
    setup: Callable[[], None] = lambda: None
    seconds: list[float] = field(default_factory=list)


def _check_import(report: Any, expected: int, what: str) -> None:
    import dicomnb

    count = len(dicomnb.catalog)
    assert count == expected, f"{what} imported {count} instances, expected {expected}"
    assert not report.errors, f"{what} reported errors: {report.errors[:3]}"


def import_folder(tree: Path, expected: int) -> None:
    """(a) dicomnb's import of the folder."""
    import dicomnb

    _check_import(dicomnb.import_local(tree), expected, "import_local")


def pydicom_loop(tree: Path, expected: int) -> None:
    """(b) The reference: pydicom.dcmread(stop_before_pixels=True) on every file, one process."""
    import pydicom

    count = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in walk(tree):
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            except Exception:  # noqa: BLE001 - a file pydicom cannot read is not counted
                continue
            if "SOPInstanceUID" in ds:
                count += 1
    assert count == expected, f"the pydicom loop read {count} instances, expected {expected}"


def io_floor(tree: Path, files: int) -> None:
    """(c) The I/O floor: walk the tree, open every file and read its first 4 KB."""
    count = 0
    for path in walk(tree):
        with open(path, "rb", buffering=0) as f:
            f.read(FLOOR_BYTES)
        count += 1
    assert count == files, f"the floor read {count} files, expected {files}"


def import_archive(archive: Path, expected: int) -> None:
    """(d) dicomnb's import of the same tree as a deflated ZIP."""
    import dicomnb

    _check_import(dicomnb.import_zip(archive), expected, "import_zip")


def _empty_catalog() -> None:
    import dicomnb

    dicomnb.catalog.clear()


def _empty_cache(cache: Path) -> Callable[[], None]:
    def setup() -> None:
        _empty_catalog()
        shutil.rmtree(cache, ignore_errors=True)

    return setup


def _settle() -> None:
    """Write what earlier runs left to write (ZIP entries, deleted files) before a timed run.

    Otherwise the kernel writes it back during the next run, on the same two cores.
    """
    if hasattr(os, "sync"):
        os.sync()


def file_create_us(folder: Path, count: int = 500) -> float:
    """Microseconds to create (and close) one empty file in ``folder``: median of three rounds.

    A first ZIP import creates a file per entry in dicomnb's cache; on some disks that, not
    reading, is what takes the time. This figure says how much.
    """
    rounds = []
    for round_ in range(3):
        scratch = folder / f"create-test-{round_}"
        scratch.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        for i in range(count):
            os.close(os.open(scratch / f"f{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        rounds.append((time.perf_counter() - start) / count * 1e6)
        shutil.rmtree(scratch)
    return round(statistics.median(rounds), 1)


def _available(measure: Measure) -> str | None:
    """Run one untimed pass of ``measure``; return why it cannot be measured, if so."""
    measure.setup()
    _settle()
    try:
        measure.run()
    except NotImplementedError:
        return "not available (dicomnb.import_zip is not implemented)"
    return None


# -- resident memory of a large catalog ----------------------------------------------------
def _status_mb(field_name: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux: the peak is all getrusage knows
        pass
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1024 / 1024


class _CopiesOfTree:
    """A source that reads the tree for real, as if it had been copied ``rounds`` times.

    Every round reads every file again, through dicomnb's worker processes, so each record
    arrives as from a real import; each copy gets fresh Study and Series Instance UIDs, each
    instance a fresh SOP Instance UID and the path it would have in its copy.
    """

    kind = "local"

    def __init__(self, tree: Path, instances: int) -> None:
        self.tree = tree
        self.origin = os.fspath(tree)
        self.instances = instances

    def items(self) -> Iterator[Any]:
        from dicomnb.core.model import InstanceRecord
        from dicomnb.sources.local import LocalSource

        made = 0
        copy = 0
        prefix = len(self.origin) + 1
        while made < self.instances:
            fresh: dict[str | None, str] = {}
            for item in LocalSource(self.tree).items():
                if not isinstance(item, InstanceRecord):
                    continue
                study = fresh.setdefault(item.StudyInstanceUID, _uid())
                series = fresh.setdefault(item.SeriesInstanceUID, _uid())
                path = os.path.join(self.origin, f"copy{copy:02d}", item.path[prefix:])
                yield item.replace(StudyInstanceUID=study, SeriesInstanceUID=series,
                                   SOPInstanceUID=_uid(), path=path)
                made += 1
                if made == self.instances:
                    return
            copy += 1


def rss_child(tree: Path, instances: int) -> dict[str, Any]:
    """Fill a catalog of ``instances`` instances, build two views; return the memory figures."""
    import pandas  # noqa: F401 - counted in the baseline: every catalog view needs it

    import dicomnb

    baseline = _status_mb("VmRSS")
    dicomnb.catalog.ingest(_CopiesOfTree(tree, instances))  # type: ignore[arg-type]
    assert len(dicomnb.catalog) == instances
    after_ingest = _status_mb("VmRSS")
    rows = len(dicomnb.catalog.instances), len(dicomnb.catalog.series)
    return {
        "instances": instances,
        "instances_rows": rows[0],
        "series_rows": rows[1],
        "baseline_mb": round(baseline, 1),
        "after_ingest_mb": round(after_ingest, 1),
        "after_views_mb": round(_status_mb("VmRSS"), 1),
        "peak_mb": round(_status_mb("VmHWM"), 1),
    }


def measure_rss(tree: Path, instances: int) -> dict[str, Any]:
    """Run :func:`rss_child` in a fresh Python process (so nothing else is counted)."""
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", os.fspath(tree), str(instances)],
        check=True, capture_output=True, text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# -- report ----------------------------------------------------------------------------------
def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or "unknown CPU"


def _machine() -> dict[str, Any]:
    import pydicom

    import dicomnb

    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "pydicom": pydicom.__version__,
        "dicomnb": dicomnb.__version__,
        "workers": dicomnb.settings.workers,
        "platform": platform.platform(),
    }


def summarise(measures: list[Measure], unavailable: dict[str, str], rss: dict[str, Any],
              manifest: dict[str, Any], runs: int, cache: dict[str, Any]) -> dict[str, Any]:
    """Turn the timings into the figures and verdicts of the results files."""
    files = manifest["files"]
    figures: dict[str, Any] = {}
    for m in measures:
        median = statistics.median(m.seconds)
        figures[m.name] = {
            "label": m.label,
            "median_s": round(median, 4),
            "files_per_s": round(files / median),
            "runs_s": [round(s, 4) for s in m.seconds],
            "runs_files_per_s": [round(files / s) for s in m.seconds],
        }
    for name, why in unavailable.items():
        figures[name] = {"label": _LABELS[name], "unavailable": why}
    folder = figures["dicomnb"]
    vs_pydicom = folder["files_per_s"] / figures["pydicom"]["files_per_s"]
    vs_floor = folder["median_s"] / figures["floor"]["median_s"]
    targets: dict[str, Any] = {
        "vs_pydicom": {"label": "folder vs pydicom loop (files/s ratio)", "value": round(vs_pydicom, 2),
                       "target": f">= {TARGET_VS_PYDICOM:g}x", "verdict": _verdict(vs_pydicom >= TARGET_VS_PYDICOM)},
        "vs_floor": {"label": "folder vs I/O floor (time ratio)", "value": round(vs_floor, 2),
                     "target": f"<= {TARGET_VS_FLOOR:g}x", "verdict": _verdict(vs_floor <= TARGET_VS_FLOOR)},
    }
    for name, label in (("zip", "ZIP first import vs folder (files/s ratio)"),
                        ("zip_reimport", "ZIP re-import vs folder (files/s ratio, for information)")):
        key = "zip_vs_folder" if name == "zip" else "zip_reimport_vs_folder"
        if "files_per_s" in figures[name]:
            ratio = figures[name]["files_per_s"] / folder["files_per_s"]
            targets[key] = {"label": label, "value": round(ratio, 2), "target": f">= {TARGET_ZIP_VS_FOLDER:g}",
                            "verdict": _verdict(ratio >= TARGET_ZIP_VS_FOLDER)}
        else:
            targets[key] = {"label": label, "value": None, "target": f">= {TARGET_ZIP_VS_FOLDER:g}",
                            "verdict": figures[name]["unavailable"]}
    targets["rss"] = {"label": f"peak RSS, catalog of {rss['instances']:,} instances and two views",
                      "value": rss["peak_mb"], "target": f"< {TARGET_RSS_MB:g} MB",
                      "verdict": _verdict(rss["peak_mb"] < TARGET_RSS_MB)}
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": _machine(),
        "tree": manifest,
        "runs": runs,
        "cache": cache,
        "figures": figures,
        "rss": rss,
        "targets": targets,
    }


_LABELS = {
    "dicomnb": "dicomnb.import_local (folder)",
    "pydicom": "pydicom.dcmread loop (1 process)",
    "floor": "I/O floor (walk + first 4 KB)",
    "zip": "dicomnb.import_zip, first import",
    "zip_reimport": "dicomnb.import_zip, re-import",
}


def _unit(target: dict[str, Any]) -> str:
    value = target["value"]
    if value is None:
        return "-"
    return f"{value} MB" if target["target"].endswith("MB") else f"{value}x"


def to_markdown(results: dict[str, Any]) -> str:
    """The results as the markdown of ``results.md``."""
    machine, tree, figures, targets, rss = (results[k] for k in ("machine", "tree", "figures", "targets", "rss"))
    lines = [
        "# Import benchmark results",
        "",
        "Written by `benchmarks/bench_import.py` (see [README.md](README.md) for what each figure means).",
        "",
        f"- Date: {results['date']}",
        f"- Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['workers']} dicomnb worker "
        f"processes, Python {machine['python']}, pydicom {machine['pydicom']}, dicomnb {machine['dicomnb']}, "
        f"{machine['platform']}",
        f"- Tree: {tree['files']:,} files ({tree['dicom']:,} DICOM made from CT_small.dcm and MR_small.dcm "
        f"with fresh UIDs, {tree['other']} non-DICOM) in {tree['series']} series, {tree['studies']} "
        f"studies, {tree['patients']} patients",
        f"- Warm page cache: one untimed pass of each measure, then {results['runs']} runs of each, "
        "interleaved; the figure is the median.",
        f"- dicomnb's cache (where ZIP entries land with copy=True; a plain import reads them in the archive): `{results['cache']['path']}`; creating an empty "
        f"file there takes {results['cache']['file_create_us']} µs.",
        "",
        "| measure | files/s (median) | median s | each run (files/s) |",
        "|---|---:|---:|---|",
    ]
    for name in _LABELS:
        f = figures[name]
        if "unavailable" in f:
            lines.append(f"| {f['label']} | {f['unavailable']} | | |")
        else:
            runs = ", ".join(f"{r:,}" for r in f["runs_files_per_s"])
            lines.append(f"| {f['label']} | {f['files_per_s']:,} | {f['median_s']:.3f} | {runs} |")
    lines += ["", "| target | measured | target | verdict |", "|---|---:|---|---|"]
    for target in targets.values():
        lines.append(f"| {target['label']} | {_unit(target)} | {target['target']} | {target['verdict']} |")
    lines += [
        "",
        f"Memory, in a fresh process: {rss['baseline_mb']} MB after importing pandas and dicomnb; "
        f"{rss['after_ingest_mb']} MB with {rss['instances']:,} instances in the catalog; "
        f"{rss['after_views_mb']} MB after building `catalog.instances` ({rss['instances_rows']:,} rows) "
        f"and `catalog.series` ({rss['series_rows']:,} rows); peak (VmHWM) {rss['peak_mb']} MB.",
        "",
    ]
    return "\n".join(lines)


def print_table(results: dict[str, Any]) -> None:
    figures, targets = results["figures"], results["targets"]
    print()
    print(f"{'measure':36} {'files/s':>10} {'median s':>9}")
    for name in _LABELS:
        f = figures[name]
        if "unavailable" in f:
            print(f"{f['label']:36} {f['unavailable']}")
        else:
            print(f"{f['label']:36} {f['files_per_s']:>10,} {f['median_s']:>9.3f}")
    print()
    for target in targets.values():
        print(f"{target['label']:58} {_unit(target):>9}  {target['target']:10} {target['verdict']}")


# -- command line ----------------------------------------------------------------------------
def _setup_argparser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="files in the tree (default 10000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each measure (default 5)")
    parser.add_argument("--data", type=Path, default=HERE / "data",
                        help="where the tree and its ZIP are generated (default benchmarks/data)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="the folder in which dicomnb's cache for the ZIP measures is made, as a "
                             "sub-folder 'bench-cache' that each run empties (default: DATA)")
    parser.add_argument("--rss-instances", type=int, default=RSS_INSTANCES,
                        help="instances in the memory measure (default 100000)")
    parser.add_argument("--out", type=Path, default=HERE, help="where results.md and results.json go")
    parser.add_argument("--only", choices=("folder",), default=None,
                        help="'folder': only the folder import, the pydicom loop and the I/O floor; "
                             "no ZIP or memory measure, and no results file is written")
    parser.add_argument("--rss-child", nargs=2, metavar=("TREE", "N"), help=argparse.SUPPRESS)
    return parser


def print_folder_figures(measures: list[Measure], files: int) -> None:
    """Print the folder measures and their two ratios (what ``--only folder`` reports)."""
    medians = {m.name: statistics.median(m.seconds) for m in measures}
    print()
    print(f"{'measure':36} {'files/s':>10} {'median s':>9}  each run (files/s)")
    for m in measures:
        runs = ", ".join(f"{files / s:,.0f}" for s in m.seconds)
        print(f"{m.label:36} {files / medians[m.name]:>10,.0f} {medians[m.name]:>9.3f}  {runs}")
    vs_pydicom = medians["pydicom"] / medians["dicomnb"]
    vs_floor = medians["dicomnb"] / medians["floor"]
    print()
    print(f"folder vs pydicom loop (files/s ratio) {vs_pydicom:6.2f}x  >= {TARGET_VS_PYDICOM:g}x "
          f"{_verdict(vs_pydicom >= TARGET_VS_PYDICOM)}")
    print(f"folder vs I/O floor (time ratio)       {vs_floor:6.2f}x  <= {TARGET_VS_FLOOR:g}x "
          f"{_verdict(vs_floor <= TARGET_VS_FLOOR)}")


def main(args: list[str] | None = None) -> int:
    options = _setup_argparser().parse_args(args)
    if options.rss_child:
        print(json.dumps(rss_child(Path(options.rss_child[0]), int(options.rss_child[1]))))
        return 0

    if options.files < 2 * SERIES or options.runs < 1:
        _setup_argparser().error(f"--files must be at least {2 * SERIES} and --runs at least 1")

    import dicomnb

    tree, archive, manifest = prepare(options.data, options.files)
    expected = manifest["dicom"]
    # Always a sub-folder of its own: it is deleted before each first-import run.
    cache = ((options.cache or options.data) / "bench-cache").resolve()
    dicomnb.settings.cache_dir = cache  # where the ZIP's entries land
    folder_only = options.only == "folder"
    create_us = 0.0 if folder_only else file_create_us(cache)
    measures = [
        Measure("dicomnb", _LABELS["dicomnb"], lambda: import_folder(tree, expected), _empty_catalog),
        Measure("pydicom", _LABELS["pydicom"], lambda: pydicom_loop(tree, expected)),
        Measure("floor", _LABELS["floor"], lambda: io_floor(tree, options.files)),
        # The first import lands every entry in dicomnb's cache; a re-import of the same
        # archive finds them there (it is what comes next that is measured second).
        Measure("zip", _LABELS["zip"], lambda: import_archive(archive, expected), _empty_cache(cache)),
        Measure("zip_reimport", _LABELS["zip_reimport"], lambda: import_archive(archive, expected),
                _empty_catalog),
    ]
    if folder_only:
        measures = [m for m in measures if m.name in ("dicomnb", "pydicom", "floor")]
    print("warm-up pass ...", flush=True)
    unavailable: dict[str, str] = {}
    for measure in measures:
        why = _available(measure)
        if why is not None:
            unavailable[measure.name] = why
            print(f"{measure.name}: {why}", flush=True)
    measures = [m for m in measures if m.name not in unavailable]
    for run in range(options.runs):
        for measure in measures:
            measure.setup()
            _settle()
            start = time.perf_counter()
            measure.run()
            measure.seconds.append(time.perf_counter() - start)
        print(f"run {run + 1}/{options.runs}: "
              + ", ".join(f"{m.name} {options.files / m.seconds[-1]:,.0f}" for m in measures) + " files/s",
              flush=True)
    _empty_catalog()
    shutil.rmtree(cache, ignore_errors=True)
    if folder_only:
        print_folder_figures(measures, options.files)
        return 0
    print(f"memory of a catalog of {options.rss_instances:,} instances ...", flush=True)
    rss = measure_rss(tree, options.rss_instances)

    shown = cache.relative_to(HERE.parent) if cache.is_relative_to(HERE.parent) else cache
    results = summarise(measures, unavailable, rss, manifest, options.runs,
                        {"path": shown.as_posix(), "file_create_us": create_us})
    print_table(results)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_section(options.out / "results.md", to_markdown(results))
    print(f"\nwrote {options.out / 'results.md'} and {options.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
