"""Retrieve benchmark: a 1,000-instance study from Orthanc, by dicomnb and by the reference clients.

Starts its own Orthanc (with ``tests/peers.py``), loads one study of 10 series of 100
copies of pydicom's ``CT_small.dcm`` with fresh UIDs (REST ``POST /instances``, 4 at a
time), then times in one run, each into an empty folder:

- ``dicomnb.retrieve`` by C-GET, by C-MOVE (into its own Storage SCP) and by WADO-URI,
  each listing the study first (C-FIND) and filing every instance into the catalog;
- a plain pynetdicom C-GET loop: one association, one C-GET of the study, each
  ``event.encoded_dataset()`` written to a file;
- dcmtk's ``getscu`` (``TCP_NODELAY=1``, ``-k QueryRetrieveLevel=STUDY``).

One untimed pass of each first, then ``--runs`` runs taken in turn; the figure is the
median. Writes ``results_retrieve.json`` and the "Retrieve" section of ``results.md``
(the rest of that file is left as it is). Orthanc is stopped by PID at the end.

    .venv/bin/python benchmarks/bench_retrieve.py [--runs 3] [--instances 1000]
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
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import peers  # noqa: E402  (tests/peers.py: starting and stopping Orthanc)
import pydicom  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402
from results_file import write_section  # noqa: E402

import dicomnb  # noqa: E402
from dicomnb.core.nodes import CallingNode, DicomNode  # noqa: E402

SERIES = 10
GET_MODEL = "1.2.840.10008.5.1.4.1.2.2.3"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SECTION = "# Retrieve benchmark results"


def make_study(count: int) -> tuple[str, list[bytes]]:
    """One study of SERIES series: CT_small copies with fresh UIDs, as Part 10 bytes."""
    source = pydicom.dcmread(peers.PYDICOM_DATA / "test_files" / "CT_small.dcm")
    study = generate_uid()
    blobs = []
    per_series = count // SERIES
    for number in range(SERIES):
        series = generate_uid()
        for index in range(per_series):
            ds = copy.deepcopy(source)
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.SeriesNumber, ds.InstanceNumber = number + 1, index + 1
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            blobs.append(buffer.getvalue())
    return study, blobs


def upload(http_port: int, blobs: list[bytes]) -> None:
    def post(data: bytes) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{http_port}/instances", data=data, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(post, blobs))


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


class Measures:
    """The clients timed, each writing into a fresh empty folder under ``work``."""

    def __init__(self, peer: peers.Peer, study: str, expected: int, work: Path) -> None:
        self.peer, self.study, self.expected, self.work = peer, study, expected, work
        self.node = DicomNode("bench", peer.aet, peer.host, peer.port, wado_url=peer.wado_url)
        self.calling = CallingNode(aet=peer.move_aet, port=peer.move_port)
        work.mkdir(parents=True, exist_ok=True)

    def _folder(self, name: str) -> Path:
        folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.work))
        return folder

    def _dicomnb(self, method: str) -> Callable[[], int]:
        def run() -> int:
            folder = self._folder(method)
            dicomnb.catalog.clear()
            with dicomnb.settings.override(cache_dir=folder):
                result = dicomnb.retrieve(self.node, self.study, method=method, calling=self.calling)
            if result.retrieved != self.expected:
                raise RuntimeError(f"dicomnb {method}: {result.retrieved} of {self.expected} instances")
            return count_files(folder / "store")
        return run

    def pynetdicom_get(self) -> int:
        from pydicom import Dataset
        from pynetdicom import AE, build_role, evt

        folder = self._folder("pynetdicom")
        written = [0]

        def on_store(event: object) -> int:
            data = event.encoded_dataset()  # type: ignore[attr-defined]
            written[0] += 1
            (folder / f"{written[0]}.dcm").write_bytes(data)
            return 0

        ae = AE(ae_title="PYNETDICOM")
        ae.add_requested_context(GET_MODEL)
        ae.add_requested_context(CT_IMAGE)
        assoc = ae.associate(self.peer.host, self.peer.port, ae_title=self.peer.aet,
                             ext_neg=[build_role(CT_IMAGE, scp_role=True)],
                             evt_handlers=[(evt.EVT_C_STORE, on_store)])
        if not assoc.is_established:
            raise RuntimeError("pynetdicom: no association")
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = self.study
        for _status, _ in assoc.send_c_get(identifier, GET_MODEL):
            pass
        assoc.release()
        return count_files(folder)

    def getscu(self) -> int:
        folder = self._folder("getscu")
        subprocess.run([shutil.which("getscu") or "getscu", "-aet", "GETSCU", "-aec", self.peer.aet,
                        self.peer.host, str(self.peer.port), "-k", "QueryRetrieveLevel=STUDY",
                        "-k", f"StudyInstanceUID={self.study}", "-od", str(folder)],
                       env=peers.peer_env(), check=True, capture_output=True)
        return count_files(folder)

    def all(self) -> dict[str, Callable[[], int]]:
        return {
            "dicomnb C-GET": self._dicomnb("c-get"),
            "dicomnb C-MOVE": self._dicomnb("c-move"),
            "dicomnb WADO-URI": self._dicomnb("wado-uri"),
            "pynetdicom C-GET loop": self.pynetdicom_get,
            "dcmtk getscu": self.getscu,
        }


def measure(measures: Measures, runs: int) -> dict[str, list[float]]:
    """Seconds of each run of each measure (one untimed pass first; runs taken in turn)."""
    timed: dict[str, list[float]] = {name: [] for name in measures.all()}
    for run in range(runs + 1):
        for name, function in measures.all().items():
            started = time.perf_counter()
            got = function()
            seconds = time.perf_counter() - started
            if got != measures.expected:
                raise RuntimeError(f"{name}: {got} files instead of {measures.expected}")
            if run:
                timed[name].append(seconds)
                print(f"  {name}: {measures.expected / seconds:,.0f} inst/s ({seconds:.3f} s)", flush=True)
        shutil.rmtree(measures.work, ignore_errors=True)
        measures.work.mkdir(parents=True, exist_ok=True)
    return timed


TARGETS = {"dicomnb C-GET": 1.0, "dicomnb C-MOVE": 0.8}


def summarise(timed: dict[str, list[float]], instances: int) -> dict[str, object]:
    rates = {name: instances / statistics.median(seconds) for name, seconds in timed.items()}
    reference = rates["dcmtk getscu"]
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}, pydicom {pydicom.__version__}, "
                   f"dicomnb {dicomnb.__version__}, {platform.platform()}",
        "instances": instances,
        "series": SERIES,
        "measures": {name: {"median_inst_per_s": round(rates[name], 1),
                            "median_s": round(statistics.median(seconds), 3),
                            "runs_inst_per_s": [round(instances / s, 1) for s in seconds],
                            "ratio_to_getscu": round(rates[name] / reference, 2)}
                     for name, seconds in timed.items()},
        "targets": {name: {"ratio": round(rates[name] / reference, 2), "target": target,
                           "pass": rates[name] / reference >= target} for name, target in TARGETS.items()},
    }


def to_markdown(results: dict[str, object]) -> str:
    measures: dict[str, dict[str, object]] = results["measures"]  # type: ignore[assignment]
    targets: dict[str, dict[str, object]] = results["targets"]  # type: ignore[assignment]
    lines = [
        SECTION, "",
        "Written by `benchmarks/bench_retrieve.py` (figures in `results_retrieve.json`).", "",
        f"- Date: {results['date']}",
        f"- Machine: {results['machine']}",
        f"- Study: {results['instances']:,} instances (CT_small.dcm copies with fresh UIDs, about 39 kB each) "
        f"in {results['series']} series, on Orthanc over loopback (`TCP_NODELAY=1`)",
        "- Each run writes into an empty folder; one untimed pass of each client, then the runs in "
        "turn; the figure is the median. dicomnb's figures include its C-FIND listing of the study "
        "and filing every instance into the catalog.", "",
        "| client | inst/s (median) | median s | ratio to getscu | each run (inst/s) |",
        "|---|---:|---:|---:|---|",
    ]
    for name, m in measures.items():
        runs = ", ".join(f"{r:,.0f}" for r in m["runs_inst_per_s"])  # type: ignore[attr-defined]
        lines.append(f"| {name} | {m['median_inst_per_s']:,.0f} | {m['median_s']:.3f} | "
                     f"{m['ratio_to_getscu']:.2f}x | {runs} |")
    lines += ["", "| target | measured | target | verdict |", "|---|---:|---|---|"]
    for name, t in targets.items():
        lines.append(f"| {name} vs getscu | {t['ratio']:.2f}x | >= {t['target']}x | "
                     f"{'PASS' if t['pass'] else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each client (default 3)")
    parser.add_argument("--instances", type=int, default=1000, help="instances in the study (default 1000)")
    parser.add_argument("--out", type=Path, default=HERE, help="where results.md and results_retrieve.json go")
    options = parser.parse_args(args)
    if options.runs < 1 or options.instances < SERIES:
        parser.error(f"--runs must be at least 1 and --instances at least {SERIES}")
    instances = options.instances // SERIES * SERIES
    root = Path(tempfile.mkdtemp(prefix="dicomnb-bench-retrieve-"))
    os.environ.setdefault("DICOMNB_CONFIG_DIR", str(root / "config"))
    try:
        with peers.run_orthanc(root / "orthanc", load=False) as peer:
            study, blobs = make_study(instances)
            started = time.perf_counter()
            upload(peer.http_port or 0, blobs)
            print(f"Orthanc (PID {peer.pid}) loaded with {instances} instances in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
            timed = measure(Measures(peer, study, instances, root / "work"), options.runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results = summarise(timed, instances)
    (options.out / "results_retrieve.json").write_text(json.dumps(results, indent=2) + "\n")
    section = to_markdown(results)
    write_section(options.out / "results.md", section)
    print("\n" + section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
