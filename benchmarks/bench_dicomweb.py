"""DICOMweb benchmark: WADO-RS retrieve by dicomnb and by dicomweb-client, and memory on a big series.

Starts its own Orthanc with the DICOMweb plugin (``tests/peers.py``) and loads one study of
10 series of 100 copies of pydicom's ``CT_small.dcm`` with fresh UIDs (``common.py``, as
``bench_retrieve.py`` does). Then times, in one run, each into an empty folder:

- dicomnb, pipelined: ``dicomnb.retrieve`` of a DICOMweb node (the QIDO-RS listing of each
  series, 4 series at a time, each series' download job started as soon as it is listed, 3
  at a time, one WADO-RS request per series, each part streamed to the store and filed into
  the catalog); "listing" is when the last series was handed over;
- the same listing, one WADO-RS request per instance (4 at a time per series: how a partly
  stored series is fetched);
- dicomnb, listing then retrieving: :func:`~dicomnb.sources.dicomweb.find_instances`, then
  :func:`~dicomnb.sources.wado_rs.retrieve_wado_rs` (the split: each part timed alone);
- dicomweb-client: ``search_for_series``, then ``retrieve_series`` and ``save_as`` of each
  instance, series after series (its documented way).

Each run also records the CPU seconds Orthanc and this process spent. One untimed pass of
each first, then ``--runs`` runs taken in turn; the figure is the median.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pydicom
from common import HERE, SERIES, count_files, orthanc_with_study, peers, upload  # benchmarks/
from pydicom.uid import generate_uid
from results_file import publish

import dicomnb
from dicomnb.core.nodes import DicomWebNode
from dicomnb.core.retrieval import Landing, expected_instances
from dicomnb.sources import dicomweb, wado_rs

SECTION = "# DICOMweb benchmark results"
TARGET_RATIO = 2.0      # dicomnb WADO-RS vs dicomweb-client, instances/s
TARGET_RSS_MB = 200.0   # peak RSS of a process retrieving the big series with dicomnb
BIG_INSTANCE_MB = 5
PARALLEL = 3            # dicomnb.retrieve's default: series (or instances) retrieved at once
PIPELINED = "dicomnb WADO-RS (series, pipelined)"
PER_INSTANCE = "dicomnb WADO-RS (per instance, pipelined)"
SEQUENTIAL = "dicomnb WADO-RS (series, listing then retrieving)"
CLIENT = "dicomweb-client retrieve_series + save_as"


def dicomnb_retrieve(url: str, study: str, folder: Path, per_instance: bool = False) -> tuple[int, float]:
    """What ``dicomnb.retrieve`` does for a DICOMweb node: list and retrieve, side by side.

    Each series' download job starts as soon as the series is listed. With ``per_instance``,
    the same listing feeds one request per instance instead (the unit a partly stored series
    is fetched in). Returns the instances retrieved and the second at which the listing was
    complete (the last series handed over).
    """
    node = DicomWebNode(name="bench", url=url)
    dicomnb.catalog.clear()
    begun = time.perf_counter()
    listed = [0.0]
    with dicomnb.settings.override(cache_dir=folder):
        if not per_instance:
            add = dicomnb.downloads.add

            def timed_add(**job: Any) -> Any:
                listed[0] = max(listed[0], time.perf_counter() - begun)
                return add(**job)

            dicomnb.downloads.add = timed_add  # type: ignore[method-assign]
            try:
                result = dicomnb.retrieve(node, study, raise_incomplete=False)
            finally:
                del dicomnb.downloads.add
            dicomnb.downloads.clear()
            if result.missing:
                raise RuntimeError(f"dicomnb: {len(result.missing)} instances missing: {result.errors[:3]}")
            return result.retrieved, listed[0]
        landings: list[Landing] = []
        with ThreadPoolExecutor(PARALLEL) as pool:

            def each(series: str, row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
                listed[0] = max(listed[0], time.perf_counter() - begun)
                landing = Landing(expected_instances(rows, study), dicomnb.catalog.add_items, source="dicomweb",
                                  origin=node.name)
                landings.append(landing)
                pool.submit(wado_rs.retrieve_wado_rs, node, landing, parallel=4, per_instance=True)

            wado_rs.list_study(node, study, None, each)
    missing = sum(len(landing.missing) for landing in landings)
    if missing:
        raise RuntimeError(f"dicomnb: {missing} instances missing")
    return sum(landing.retrieved for landing in landings), listed[0]


def dicomnb_list_then_retrieve(url: str, study: str, folder: Path) -> tuple[int, float]:
    """The listing of the whole study, then the retrieve: returns the instances and the listing's seconds."""
    node = DicomWebNode(name="bench", url=url)
    dicomnb.catalog.clear()
    with dicomnb.settings.override(cache_dir=folder):
        started = time.perf_counter()
        rows = dicomweb.find_instances(node, study)
        listing = time.perf_counter() - started
        landing = Landing(expected_instances(rows, study), dicomnb.catalog.add_items, source="dicomweb",
                          origin=node.name)
        landing.file_stored()
        wado_rs.retrieve_wado_rs(node, landing, parallel=PARALLEL)
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


def file_create_us(folder: Path, count: int = 500) -> float:
    """Microseconds this disk takes to create one empty file in ``folder`` (every client creates one per instance)."""
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for index in range(count):
        os.close(os.open(folder / f"empty-{index}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    seconds = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    return seconds / count * 1e6


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of this process (all its threads) or of process ``pid``."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    """One timed run: seconds in all, of which listing (or: when the listing was complete), CPU seconds."""

    seconds: float
    listing: float
    server_cpu: float
    client_cpu: float


class Measures:
    """The clients timed, each writing into a fresh empty folder under ``work``."""

    def __init__(self, url: str, study: str, expected: int, work: Path) -> None:
        self.url, self.study, self.expected, self.work = url, study, expected, work
        work.mkdir(parents=True, exist_ok=True)

    def _folder(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.work))

    def _dicomnb(self, retrieve: Callable[[str, str, Path], tuple[int, float]]) -> Callable[[], tuple[int, float]]:
        def run() -> tuple[int, float]:
            folder = self._folder("dicomnb")
            listing = retrieve(self.url, self.study, folder)[1]
            return count_files(folder / "store"), listing
        return run

    def dicomweb_client(self) -> tuple[int, float]:
        folder = self._folder("client")
        listing = client_retrieve(self.url, self.study, folder)[1]
        return count_files(folder), listing

    def all(self) -> dict[str, Callable[[], tuple[int, float]]]:
        return {
            PIPELINED: self._dicomnb(dicomnb_retrieve),
            PER_INSTANCE: self._dicomnb(lambda url, study, folder: dicomnb_retrieve(url, study, folder, True)),
            SEQUENTIAL: self._dicomnb(dicomnb_list_then_retrieve),
            CLIENT: self.dicomweb_client,
        }


def measure(measures: Measures, runs: int, server_pid: int) -> dict[str, list[Run]]:
    """Each run of each measure (one untimed pass first; runs in turn)."""
    timed: dict[str, list[Run]] = {name: [] for name in measures.all()}
    for run in range(runs + 1):
        for name, function in measures.all().items():
            server, client = cpu_seconds(server_pid), cpu_seconds()
            started = time.perf_counter()
            got, listing = function()
            seconds = time.perf_counter() - started
            if got != measures.expected:
                raise RuntimeError(f"{name}: {got} files instead of {measures.expected}")
            if run:
                timed[name].append(Run(seconds, listing, cpu_seconds(server_pid) - server, cpu_seconds() - client))
                print(f"  {name}: {measures.expected / seconds:,.0f} inst/s ({seconds:.3f} s, listing "
                      f"{listing:.3f} s, CPU {timed[name][-1].server_cpu:.2f} s Orthanc, "
                      f"{timed[name][-1].client_cpu:.2f} s client)", flush=True)
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

def summarise(timed: dict[str, list[Run]], instances: int, memory: dict[str, dict[str, float]],
              big_mb: int, create_us: float) -> dict[str, object]:
    import dicomweb_client

    def median(name: str, part: Callable[[Run], float]) -> float:
        return statistics.median(part(run) for run in timed[name])

    whole = {name: instances / median(name, lambda run: run.seconds) for name in timed}
    listing_alone, retrieving_alone = median(SEQUENTIAL, lambda r: r.listing), median(SEQUENTIAL, lambda r: r.seconds - r.listing)
    client_retrieving = median(CLIENT, lambda r: r.seconds - r.listing)
    ratio = whole[PIPELINED] / whole[CLIENT]
    ratio_retrieving = client_retrieving / retrieving_alone
    peak = memory["dicomnb"]["peak_mb"]
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}, pydicom {pydicom.__version__}, "
                   f"dicomweb-client {dicomweb_client.__version__}, dicomnb {dicomnb.__version__}, "
                   f"{platform.platform()}",
        "instances": instances,
        "series": SERIES,
        "measures": {name: {"median_inst_per_s": round(whole[name], 1),
                            "median_s": round(median(name, lambda r: r.seconds), 3),
                            "median_listing_s": round(median(name, lambda r: r.listing), 3),
                            "median_after_listing_s": round(median(name, lambda r: r.seconds - r.listing), 3),
                            "median_orthanc_cpu_s": round(median(name, lambda r: r.server_cpu), 2),
                            "median_client_cpu_s": round(median(name, lambda r: r.client_cpu), 2),
                            "runs_inst_per_s": [round(instances / r.seconds, 1) for r in runs],
                            "ratio_to_dicomweb_client": round(whole[name] / whole[CLIENT], 2)}
                     for name, runs in timed.items()},
        "split": {"listing alone s": round(listing_alone, 3), "retrieving alone s": round(retrieving_alone, 3),
                  "both pipelined s": round(median(PIPELINED, lambda r: r.seconds), 3),
                  "listing complete at s (pipelined)": round(median(PIPELINED, lambda r: r.listing), 3),
                  "dicomweb-client retrieving s": round(client_retrieving, 3)},
        "file_create_us": round(create_us, 1),
        "big_series_mb": big_mb,
        "memory": memory,
        "targets": {
            "dicomnb WADO-RS vs dicomweb-client, listing included (as dicomnb.retrieve)": {
                "measured": round(ratio, 2), "target": f">= {TARGET_RATIO}x", "pass": ratio >= TARGET_RATIO},
            "dicomnb WADO-RS vs dicomweb-client, retrieving alone": {
                "measured": round(ratio_retrieving, 2), "target": f">= {TARGET_RATIO}x",
                "pass": ratio_retrieving >= TARGET_RATIO},
            f"peak RSS, dicomnb retrieving a {big_mb} MB series": {
                "measured": peak, "target": f"< {TARGET_RSS_MB:.0f} MB", "pass": peak < TARGET_RSS_MB},
        },
    }


def to_markdown(results: dict[str, object]) -> str:
    measures: dict[str, dict[str, object]] = results["measures"]  # type: ignore[assignment]
    split: dict[str, float] = results["split"]  # type: ignore[assignment]
    memory: dict[str, dict[str, float]] = results["memory"]  # type: ignore[assignment]
    targets: dict[str, dict[str, object]] = results["targets"]  # type: ignore[assignment]
    ours = measures[PIPELINED]
    lines = [
        SECTION, "",
        "Written by `benchmarks/bench_dicomweb.py` (figures in `results_dicomweb.json`).", "",
        f"- Date: {results['date']}",
        f"- Machine: {results['machine']}",
        f"- Study: {results['instances']:,} instances (CT_small.dcm copies with fresh UIDs, about 39 kB each) "
        f"in {results['series']} series, on Orthanc 1.10 with its DICOMweb plugin over loopback",
        "- Each run writes into an empty folder; one untimed pass of each client, then the runs in turn; "
        "the figures are medians. dicomnb lists every instance (QIDO-RS) to check what arrives and files "
        "each one into the catalog; dicomweb-client only searches for the study's series and checks nothing.",
        "- \"Listing\": for the pipelined runs, when the last series' listing arrived (the retrieves run "
        "meanwhile); for \"listing then retrieving\", the listing's own time; for dicomweb-client, its "
        "search for the series. \"After\": the rest. CPU: seconds Orthanc and the client process spent "
        "(user + system) during the run.",
        "",
        "| client | inst/s | median s | listing (s) | after (s) | CPU Orthanc (s) | CPU client (s) | "
        "ratio to dicomweb-client | each run (inst/s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, m in measures.items():
        runs = ", ".join(f"{r:,.0f}" for r in m["runs_inst_per_s"])  # type: ignore[attr-defined]
        lines.append(f"| {name} | {m['median_inst_per_s']:,.0f} | {m['median_s']:.3f} | "
                     f"{m['median_listing_s']:.3f} | {m['median_after_listing_s']:.3f} | "
                     f"{m['median_orthanc_cpu_s']:.2f} | {m['median_client_cpu_s']:.2f} | "
                     f"{m['ratio_to_dicomweb_client']:.2f}x | {runs} |")
    lines += [
        "", "The split of dicomnb's retrieve (medians):", "",
        "| part | seconds |", "|---|---:|",
        f"| listing alone (QIDO-RS of every instance, series side by side) | {split['listing alone s']:.3f} |",
        f"| retrieving alone (WADO-RS of the listed series, into the store and the catalog) | "
        f"{split['retrieving alone s']:.3f} |",
        f"| both, pipelined (as `dicomnb.retrieve`); the listing complete at | {split['both pipelined s']:.3f}; "
        f"{split['listing complete at s (pipelined)']:.3f} |",
        f"| dicomweb-client retrieving (without its search) | {split['dicomweb-client retrieving s']:.3f} |",
        "",
        f"Orthanc 1.10's DICOMweb plugin reads the tags of every instance it lists, whatever attributes are "
        f"asked (see `dicomnb/sources/wado_rs.py`): the listing costs it {ours['median_orthanc_cpu_s']:.2f} CPU "
        f"seconds here, and dicomnb {ours['median_client_cpu_s']:.2f} (of which creating {results['instances']:,} "
        f"files: this disk takes {results['file_create_us']:.0f} µs to create one), on {os.cpu_count()} cores; "
        f"dicomweb-client spends {measures[CLIENT]['median_client_cpu_s']:.2f} CPU seconds parsing and writing, "
        "with Orthanc nearly idle.",
    ]
    lines += ["", f"Memory: one series of {results['big_series_mb']} MB ({BIG_INSTANCE_MB} MB instances), "
              "retrieved by a fresh process (dicomnb: listing and WADO-RS pipelined, catalog); resident "
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
    if options.runs < 1 or options.instances < SERIES or options.big_mb < BIG_INSTANCE_MB:
        parser.error(f"--runs must be at least 1, --instances at least {SERIES}, --big-mb at least {BIG_INSTANCE_MB}")
    instances = options.instances // SERIES * SERIES
    root = Path(tempfile.mkdtemp(prefix="dicomnb-bench-dicomweb-"))
    os.environ.setdefault("DICOMNB_CONFIG_DIR", str(root / "config"))
    try:
        with orthanc_with_study(root, instances) as (peer, study):
            url = peer.dicomweb_url or ""
            create_us = file_create_us(root / "create")
            timed = measure(Measures(url, study, instances, root / "work"), options.runs, peer.pid)
            big_study, big = make_big_series(options.big_mb)
            started = time.perf_counter()
            upload(peer.http_port or 0, big)
            print(f"Loaded a series of {len(big)} instances, {sum(map(len, big)) / 1e6:,.0f} MB, in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
            del big
            memory = measure_memory(url, big_study, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results = summarise(timed, instances, memory, options.big_mb, create_us)
    publish(options.out, "results_dicomweb.json", results, to_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
