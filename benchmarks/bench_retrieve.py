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

import pydicom
from common import HERE, SERIES, count_files, orthanc_with_study, peers  # benchmarks/, beside this script
from results_file import publish

import dicomnb
from dicomnb.core.nodes import CallingNode, DicomNode

GET_MODEL = "1.2.840.10008.5.1.4.1.2.2.3"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SECTION = "# Retrieve benchmark results"


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
        subprocess.run([peers.system_tool("getscu") or "getscu", "-aet", "GETSCU", "-aec", self.peer.aet,
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
        with orthanc_with_study(root, instances) as (peer, study):
            timed = measure(Measures(peer, study, instances, root / "work"), options.runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results = summarise(timed, instances)
    publish(options.out, "results_retrieve.json", results, to_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
