"""DICOMweb benchmark: WADO-RS retrieve by dicomnb and by dicomweb-client, and memory on a big series.

Starts its own Orthanc with the DICOMweb plugin (``tests/peers.py``) and loads one study of
10 series of 100 copies of pydicom's ``CT_small.dcm`` with fresh UIDs (as
``bench_retrieve.py`` builds it). Then times, in one run, each into an empty folder:

- dicomnb: the listing of the study (QIDO-RS, :func:`dicomnb.sources.dicomweb.find_instances`),
  then :func:`~dicomnb.sources.dicomweb.retrieve_wado_rs` (a series per request, 4 at a time,
  each part streamed to the store and filed into the catalog) — what ``dicomnb.retrieve``
  does for a DICOMweb node;
- the same one instance per request (``per_instance=True``, the unit a download pauses on);
- dicomweb-client: ``search_for_series``, then ``retrieve_series`` and ``save_as`` of each
  instance, series after series (its documented way).

One untimed pass of each first, then ``--runs`` runs taken in turn; the figure is the median.

Then memory: a series of ``--big-mb`` MB (instances of 5 MB of pixel data) is loaded, and
a fresh process retrieves it with dicomnb, then another with dicomweb-client; each reports
its peak resident memory (``VmHWM``). Writes ``results_dicomweb.json`` and the "DICOMweb"
section of ``results.md`` (the rest of that file is left as it is). Orthanc is stopped by
PID at the end.

    .venv/bin/python benchmarks/bench_dicomweb.py [--runs 5] [--instances 1000] [--big-mb 500]
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import peers  # noqa: E402  (tests/peers.py: starting and stopping Orthanc)
import pydicom  # noqa: E402
from bench_retrieve import count_files, make_study, upload  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402
from results_file import write_section  # noqa: E402

import dicomnb  # noqa: E402
from dicomnb.core.nodes import DicomWebNode  # noqa: E402
from dicomnb.core.retrieval import Landing, expected_instances  # noqa: E402
from dicomnb.sources import dicomweb  # noqa: E402

SECTION = "# DICOMweb benchmark results"
TARGET_RATIO = 2.0      # dicomnb WADO-RS vs dicomweb-client, instances/s
TARGET_RSS_MB = 200.0   # peak RSS of a process retrieving the big series with dicomnb
BIG_INSTANCE_MB = 5


def dicomnb_retrieve(url: str, study: str, folder: Path, per_instance: bool = False) -> tuple[int, float]:
    """What ``dicomnb.retrieve`` does for a DICOMweb node: list, land, retrieve.

    Returns the instances retrieved and the seconds the listing took.
    """
    node = DicomWebNode(name="bench", url=url)
    dicomnb.catalog.clear()
    with dicomnb.settings.override(cache_dir=folder):
        started = time.perf_counter()
        rows = dicomweb.find_instances(node, study)
        listing = time.perf_counter() - started
        landing = Landing(expected_instances(rows, study), dicomnb.catalog.add_items, source="dicomweb",
                          origin=node.name)
        landing.file_stored()
        dicomweb.retrieve_wado_rs(node, landing, per_instance=per_instance)
    if landing.missing:
        raise RuntimeError(f"dicomnb: {len(landing.missing)} instances missing: {landing.errors[:3]}")
    return landing.retrieved, listing


def client_retrieve(url: str, study: str, folder: Path) -> tuple[int, float]:
    """dicomweb-client's way: the series of the study, each retrieved whole, each instance saved.

    Returns the instances saved and the seconds the search for the series took.
    """
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url)
    saved = 0
    started = time.perf_counter()
    found = client.search_for_series(study)
    listing = time.perf_counter() - started
    for series in found:
        series_uid = series["0020000E"]["Value"][0]
        for ds in client.retrieve_series(study, series_uid):
            ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm")
            saved += 1
    return saved, listing


class Measures:
    """The clients timed, each writing into a fresh empty folder under ``work``."""

    def __init__(self, url: str, study: str, expected: int, work: Path) -> None:
        self.url, self.study, self.expected, self.work = url, study, expected, work
        work.mkdir(parents=True, exist_ok=True)

    def _folder(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.work))

    def dicomnb_series(self) -> tuple[int, float]:
        folder = self._folder("series")
        listing = dicomnb_retrieve(self.url, self.study, folder)[1]
        return count_files(folder / "store"), listing

    def dicomnb_instances(self) -> tuple[int, float]:
        folder = self._folder("instances")
        listing = dicomnb_retrieve(self.url, self.study, folder, per_instance=True)[1]
        return count_files(folder / "store"), listing

    def dicomweb_client(self) -> tuple[int, float]:
        folder = self._folder("client")
        listing = client_retrieve(self.url, self.study, folder)[1]
        return count_files(folder), listing

    def all(self) -> dict[str, Callable[[], tuple[int, float]]]:
        return {
            "dicomnb WADO-RS (series)": self.dicomnb_series,
            "dicomnb WADO-RS (per instance)": self.dicomnb_instances,
            "dicomweb-client retrieve_series + save_as": self.dicomweb_client,
        }


def measure(measures: Measures, runs: int) -> dict[str, list[tuple[float, float]]]:
    """(seconds, of which listing) of each run of each measure (one untimed pass first; runs in turn)."""
    timed: dict[str, list[tuple[float, float]]] = {name: [] for name in measures.all()}
    for run in range(runs + 1):
        for name, function in measures.all().items():
            started = time.perf_counter()
            got, listing = function()
            seconds = time.perf_counter() - started
            if got != measures.expected:
                raise RuntimeError(f"{name}: {got} files instead of {measures.expected}")
            if run:
                timed[name].append((seconds, listing))
                print(f"  {name}: {measures.expected / seconds:,.0f} inst/s ({seconds:.3f} s, listing "
                      f"{listing:.3f} s)", flush=True)
        shutil.rmtree(measures.work, ignore_errors=True)
        measures.work.mkdir(parents=True, exist_ok=True)
    return timed


# --- memory on a big series, in fresh processes --------------------------------------------------

def make_big_series(megabytes: int) -> tuple[str, list[bytes]]:
    """One study, one series of ``megabytes`` MB: CT_small copies with 5 MB of pixel data each."""
    source = pydicom.dcmread(peers.PYDICOM_DATA / "test_files" / "CT_small.dcm")
    side = int((BIG_INSTANCE_MB * 1_000_000 / 2) ** 0.5)
    pixels = os.urandom(side * side * 2)  # random: nothing on the way can make it smaller
    study, series = generate_uid(), generate_uid()
    blobs = []
    for index in range(max(1, megabytes // BIG_INSTANCE_MB)):
        ds = copy.deepcopy(source)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.Rows = ds.Columns = side
        ds.PixelData = pixels
        ds.InstanceNumber = index + 1
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        blobs.append(buffer.getvalue())
    return study, blobs


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(client: str, url: str, study: str, folder: str) -> int:
    """Run in a fresh process: retrieve ``study`` with ``client``, print what it took as JSON."""
    if client == "dicomnb":
        import dicomnb  # noqa: F401 - counted in the baseline, as in a notebook
    else:
        import dicomweb_client  # noqa: F401
    baseline = peak_rss_mb()
    started = time.perf_counter()
    if client == "dicomnb":
        count = dicomnb_retrieve(url, study, Path(folder))[0]
        stored = sum(p.stat().st_size for p in Path(folder, "store").rglob("*.dcm"))
    else:
        count = client_retrieve(url, study, Path(folder))[0]
        stored = sum(p.stat().st_size for p in Path(folder).glob("*.dcm"))
    print(json.dumps({"instances": count, "bytes": stored, "seconds": round(time.perf_counter() - started, 3),
                      "baseline_mb": round(baseline, 1), "peak_mb": round(peak_rss_mb(), 1)}))
    return 0


def measure_memory(url: str, study: str, work: Path) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for client in ("dicomnb", "dicomweb-client"):
        folder = Path(tempfile.mkdtemp(prefix=f"big-{client}-", dir=work))
        done = subprocess.run([sys.executable, __file__, "--child", client, url, study, str(folder)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{client} on the big series failed:\n{done.stderr[-3000:]}")
        found[client] = json.loads(done.stdout.strip().splitlines()[-1])
        shutil.rmtree(folder, ignore_errors=True)
        print(f"  {client}: {found[client]}", flush=True)
    return found


# --- results -------------------------------------------------------------------------------------

def summarise(timed: dict[str, list[tuple[float, float]]], instances: int, memory: dict[str, dict[str, float]],
              big_mb: int) -> dict[str, object]:
    import dicomweb_client

    def median_rate(name: str, part: Callable[[tuple[float, float]], float]) -> float:
        return instances / statistics.median(part(run) for run in timed[name])

    whole = {name: median_rate(name, lambda run: run[0]) for name in timed}
    retrieve = {name: median_rate(name, lambda run: run[0] - run[1]) for name in timed}
    client = "dicomweb-client retrieve_series + save_as"
    ours = "dicomnb WADO-RS (series)"
    ratio_whole, ratio_retrieve = whole[ours] / whole[client], retrieve[ours] / retrieve[client]
    peak = memory["dicomnb"]["peak_mb"]
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}, pydicom {pydicom.__version__}, "
                   f"dicomweb-client {dicomweb_client.__version__}, dicomnb {dicomnb.__version__}, "
                   f"{platform.platform()}",
        "instances": instances,
        "series": 10,
        "measures": {name: {"median_inst_per_s": round(whole[name], 1),
                            "median_s": round(statistics.median(s for s, _ in runs), 3),
                            "median_listing_s": round(statistics.median(listing for _, listing in runs), 3),
                            "retrieve_inst_per_s": round(retrieve[name], 1),
                            "runs_inst_per_s": [round(instances / s, 1) for s, _ in runs],
                            "ratio_to_dicomweb_client": round(whole[name] / whole[client], 2),
                            "retrieve_ratio_to_dicomweb_client": round(retrieve[name] / retrieve[client], 2)}
                     for name, runs in timed.items()},
        "big_series_mb": big_mb,
        "memory": memory,
        "targets": {
            "dicomnb WADO-RS vs dicomweb-client, retrieving": {
                "measured": round(ratio_retrieve, 2), "target": f">= {TARGET_RATIO}x",
                "pass": ratio_retrieve >= TARGET_RATIO},
            "dicomnb WADO-RS vs dicomweb-client, listing included": {
                "measured": round(ratio_whole, 2), "target": f">= {TARGET_RATIO}x", "pass": ratio_whole >= TARGET_RATIO},
            f"peak RSS, dicomnb retrieving a {big_mb} MB series": {
                "measured": peak, "target": f"< {TARGET_RSS_MB:.0f} MB", "pass": peak < TARGET_RSS_MB},
        },
    }


def to_markdown(results: dict[str, object]) -> str:
    measures: dict[str, dict[str, object]] = results["measures"]  # type: ignore[assignment]
    memory: dict[str, dict[str, float]] = results["memory"]  # type: ignore[assignment]
    targets: dict[str, dict[str, object]] = results["targets"]  # type: ignore[assignment]
    lines = [
        SECTION, "",
        "Written by `benchmarks/bench_dicomweb.py` (figures in `results_dicomweb.json`).", "",
        f"- Date: {results['date']}",
        f"- Machine: {results['machine']}",
        f"- Study: {results['instances']:,} instances (CT_small.dcm copies with fresh UIDs, about 39 kB each) "
        f"in {results['series']} series, on Orthanc 1.10 with its DICOMweb plugin over loopback",
        "- Each run writes into an empty folder; one untimed pass of each client, then the runs in turn; "
        "the figures are medians. \"Listing\" is dicomnb's QIDO-RS listing of every instance of the study "
        "(what the retrieve is checked against; Orthanc takes about 3 ms per instance listed) or "
        "dicomweb-client's search for the study's series (it checks nothing). \"Retrieving\" is the rest: "
        "WADO-RS, writing the files, and for dicomnb filing every instance into the catalog.",
        "",
        "| client | inst/s, all | median s | of which listing (s) | inst/s, retrieving | ratio to "
        "dicomweb-client (all / retrieving) | each run (inst/s, all) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, m in measures.items():
        runs = ", ".join(f"{r:,.0f}" for r in m["runs_inst_per_s"])  # type: ignore[attr-defined]
        lines.append(f"| {name} | {m['median_inst_per_s']:,.0f} | {m['median_s']:.3f} | "
                     f"{m['median_listing_s']:.3f} | {m['retrieve_inst_per_s']:,.0f} | "
                     f"{m['ratio_to_dicomweb_client']:.2f}x / {m['retrieve_ratio_to_dicomweb_client']:.2f}x | "
                     f"{runs} |")
    lines += ["", f"Memory: one series of {results['big_series_mb']} MB ({BIG_INSTANCE_MB} MB instances), "
              "retrieved by a fresh process (dicomnb: listing, WADO-RS of the series, catalog); resident "
              "memory after the imports and peak (`VmHWM`):", "",
              "| client | instances | MB received | seconds | RSS after imports (MB) | peak RSS (MB) |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, m in memory.items():
        lines.append(f"| {name} | {m['instances']:,.0f} | {m['bytes'] / 1e6:,.0f} | {m['seconds']:.1f} | "
                     f"{m['baseline_mb']:.0f} | {m['peak_mb']:.0f} |")
    lines += ["", "| target | measured | target | verdict |", "|---|---:|---|---|"]
    for name, t in targets.items():
        unit = " MB" if "RSS" in name else "x"
        lines.append(f"| {name} | {t['measured']}{unit} | {t['target']} | {'PASS' if t['pass'] else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def main(args: list[str] | None = None) -> int:
    argv = sys.argv[1:] if args is None else args
    if argv[:1] == ["--child"]:
        return child(*argv[1:5])
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each client (default 5)")
    parser.add_argument("--instances", type=int, default=1000, help="instances in the study (default 1000)")
    parser.add_argument("--big-mb", type=int, default=500, help="size of the big series in MB (default 500)")
    parser.add_argument("--out", type=Path, default=HERE, help="where results.md and results_dicomweb.json go")
    options = parser.parse_args(argv)
    if options.runs < 1 or options.instances < 10 or options.big_mb < BIG_INSTANCE_MB:
        parser.error(f"--runs must be at least 1, --instances at least 10, --big-mb at least {BIG_INSTANCE_MB}")
    instances = options.instances // 10 * 10
    root = Path(tempfile.mkdtemp(prefix="dicomnb-bench-dicomweb-"))
    os.environ.setdefault("DICOMNB_CONFIG_DIR", str(root / "config"))
    try:
        with peers.run_orthanc(root / "orthanc", load=False) as peer:
            url = peer.dicomweb_url or ""
            study, blobs = make_study(instances)
            started = time.perf_counter()
            upload(peer.http_port or 0, blobs)
            print(f"Orthanc (PID {peer.pid}) loaded with {instances} instances in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
            timed = measure(Measures(url, study, instances, root / "work"), options.runs)
            big_study, big = make_big_series(options.big_mb)
            started = time.perf_counter()
            upload(peer.http_port or 0, big)
            print(f"Loaded a series of {len(big)} instances, {sum(map(len, big)) / 1e6:,.0f} MB, in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
            del big
            memory = measure_memory(url, big_study, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results = summarise(timed, instances, memory, options.big_mb)
    (options.out / "results_dicomweb.json").write_text(json.dumps(results, indent=2) + "\n")
    section = to_markdown(results)
    write_section(options.out / "results.md", section)
    print("\n" + section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
