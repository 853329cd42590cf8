"""Downloads benchmark: what pausing and resuming a 1,000-instance retrieve costs, and what progress costs.

Starts its own Orthanc with the DICOMweb plugin (``tests/peers.py``) and loads one study of
10 series of 100 copies of pydicom's ``CT_small.dcm`` with fresh UIDs (``common.py``, as
``bench_retrieve.py`` does). Then, for each retrieve method (C-GET, C-MOVE into dicomnb's
own Storage SCP, WADO-URI, WADO-RS), times in turn, each into an emptied cache (store,
download jobs and catalog emptied):

- plain: ``dicomnb.retrieve(node, study, method=...)``, listing included;
- paused and resumed: the same with a ``cancel`` event that the progress callback sets once
  half the study has landed; the retrieve returns cancelled, then
  ``dicomnb.downloads.resume()`` and ``dicomnb.downloads.wait()`` finish it. The time runs
  from the start of the retrieve to the end of the wait. Each run then checks what the store
  holds against what Orthanc holds (asked over its REST API, not through dicomnb): every
  instance of the study, once, nothing else, each fetched once over the two parts;
- with a listener: the plain retrieve with ``dicomnb.downloads.subscribe(listener)``,
  counting the listener's calls (the download panel's updates, at most ~10 a second).

All three carry the same progress callback (it notes when half the study has landed, and in
the paused run sets the cancel). Every instance filed into the catalog is timestamped (the
download manager's ``file_items``, wrapped), which splits the paused run: how long nothing
arrived around the pause (the last arrival before the retrieve returned, the first after
the resume) against the longest such wait in the plain run's second half. Each run also
notes the CPU seconds other processes took meanwhile (the machine's busy time less this
process's and Orthanc's): a neighbour's load shows there, and in the spread of the runs.

dicomnb's cache (the store and the jobs' states) goes on a tmpfs (``/dev/shm``) by default.
This machine's disk is ext4 without a journal: there, a file created within minutes of many
deletions has the kernel step past each recently freed inode (``ext4_create`` →
``recently_deleted``), up to 1 ms of system time a file. Whatever the machine had deleted
before (a test run, the last run's store) then swung a run by half, both plain and paused.
A journalled ext4, the usual case, does not do this.

One untimed pass of each first, then ``--runs`` runs taken in turn (plain and paused swap
places every round); the figures are
medians (best-of figures beside them). The targets: pausing and resuming adds less than 5%
to the plain retrieve's time (medians), its dead time is under 5% of it too, and the study
is complete; the listener is called at most ~10 times a second, and its updates (building
the progress report it is handed) take under 1% of one core, the time with and without it
being given too. Writes ``results_downloads.json`` and the "Downloads" section of
``results.md`` (the rest of that file is left as it is). Orthanc is stopped by PID at the end.

    .venv/bin/python benchmarks/bench_downloads.py [--runs 5] [--instances 1000] [--methods c-get,wado-rs]
        [--cache-dir /dev/shm]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import pydicom
from bench_dicomweb import cpu_seconds  # benchmarks/, beside this script
from common import HERE, SERIES, orthanc_with_study, peers
from results_file import publish

import dicomnb
from dicomnb.core.nodes import AnyNode, CallingNode, DicomNode, DicomWebNode
from dicomnb.core.store import instance_path

SECTION = "# Downloads benchmark results"
METHODS = ("c-get", "c-move", "wado-uri", "wado-rs")
TARGET_OVERHEAD = 5.0   # % that pausing at half-way and resuming may add to a plain retrieve
TARGET_UPDATES = 10.0   # listener calls per second, at most (the panel's refresh rate)
TARGET_LISTENER = 1.0   # % of one core a subscribed listener's updates may take (its status reports)
PLAIN, PAUSED, LISTENED = "plain", "paused and resumed", "with a listener"
SHM = Path("/dev/shm")  # a tmpfs on Linux: the cache's default (see the module's docstring)


# --- what the study holds, asked of Orthanc (not of dicomnb) -------------------------------------

def study_paths(http_port: int, study: str) -> set[Path]:
    """Where every instance of ``study`` Orthanc holds must land in the store (relative to it)."""
    def find(level: str) -> list[dict[str, Any]]:
        body = json.dumps({"Level": level, "Query": {"StudyInstanceUID": study}, "Expand": True}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{http_port}/tools/find", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            return cast("list[dict[str, Any]]", json.loads(response.read()))

    series = {s["ID"]: s["MainDicomTags"]["SeriesInstanceUID"] for s in find("Series")}
    root = Path("/")
    return {instance_path(study, series[i["ParentSeries"]], i["MainDicomTags"]["SOPInstanceUID"], root=root)
            .relative_to(root) for i in find("Instance")}


def file_system(path: Path) -> str:
    """The type of the file system ``path`` is on (``/proc/mounts``' longest mount point above it)."""
    best, kind, where = "", "unknown", path.resolve()
    with suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 2 and len(fields[1]) > len(best) and where.is_relative_to(fields[1]):
                best, kind = fields[1], fields[2]
    return kind


def busy_seconds() -> float:
    """CPU seconds this machine has been busy (all processes, all cores) since it started."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait


# --- one run ------------------------------------------------------------------------------------

@dataclass
class Run:
    """One timed run (seconds from the start of the retrieve)."""

    seconds: float
    half: float                                         # half the study had landed (paused: the cancel set)
    arrivals: list[float] = field(repr=False)           # each instance filed, as it arrived
    background: float = 0.0                             # CPU seconds other processes took meanwhile
    returned: float = 0.0                               # paused: the retrieve returned
    retrieved_before: int = 0                           # paused: instances landed by then
    resumed_jobs: int = 0                               # paused: jobs resume() started
    listed: int = 0                                     # paused: instances the retrieve made jobs for
    present: int = 0                                    # instances of the study in the store at the end
    calls: list[float] = field(default_factory=list)    # listener: when it was called
    status_ms: float = 0.0                              # listener: one downloads.status() (what each call costs)

    @property
    def resume(self) -> float:
        return self.seconds - self.returned

    @property
    def stop_tail(self) -> float:
        """Paused: from the last arrival before the retrieve returned to its return."""
        return self.returned - max((t for t in self.arrivals if t <= self.returned), default=self.returned)

    @property
    def restart(self) -> float:
        """Paused: from the retrieve's return to the first arrival after the resume."""
        return min((t for t in self.arrivals if t > self.returned), default=self.seconds) - self.returned

    @property
    def longest_wait(self) -> float:
        """The longest time without an arrival after half-way (paused: the pause is one of them)."""
        after = [t for t in self.arrivals if t >= self.half]
        return max((b - a for a, b in itertools.pairwise(after)), default=0.0)

    @property
    def calls_per_s(self) -> float:
        return len(self.calls) / self.seconds

    @property
    def shortest_gap(self) -> float:
        return min((b - a for a, b in itertools.pairwise(self.calls)), default=float("nan"))


class Measures:
    """The three runs of each method, each into an emptied cache."""

    def __init__(self, peer: peers.Peer, study: str, expected: set[Path], cache: Path) -> None:
        self.study, self.expected, self.cache, self.server = study, expected, cache, peer.pid
        self.total = len(expected)
        self.dimse = DicomNode("bench", peer.aet, peer.host, peer.port, wado_url=peer.wado_url)
        self.web = DicomWebNode(name="bench-web", url=peer.dicomweb_url or "")
        self.calling = CallingNode(aet=peer.move_aet, port=peer.move_port)
        self.arrivals: list[float] = []
        self.started = 0.0

    def node(self, method: str) -> AnyNode:
        return self.web if method == "wado-rs" else self.dimse

    @contextmanager
    def timestamped(self) -> Iterator[None]:
        """While it runs, each instance the download manager files (one at a time as it arrives;
        those found in the store come together) is noted in ``arrivals``."""
        manager = dicomnb.downloads
        filing = manager.file_items

        def file_items(items: list[Any]) -> object:
            if len(items) == 1:
                self.arrivals.append(time.perf_counter() - self.started)
            return filing(items)

        manager.file_items = file_items
        try:
            yield
        finally:
            manager.file_items = filing

    def empty(self) -> None:
        """An empty store, no download jobs, an empty catalog."""
        dicomnb.downloads.clear()
        for folder in ("store", "downloads"):
            shutil.rmtree(self.cache / folder, ignore_errors=True)
        dicomnb.catalog.clear()

    def check_store(self, what: str) -> int:
        """How many instances of the study the store holds; raises if it holds anything else
        (a file that is no instance of the study, a half-written one) or the catalog disagrees."""
        store = self.cache / "store"
        found = [p.relative_to(store) for p in store.rglob("*") if p.is_file()]
        extra = set(found) - self.expected
        if extra:
            raise RuntimeError(f"{what}: {len(found)} files in the store, {len(extra)} of them no instance "
                               f"of the study (e.g. {sorted(extra)[0]})")
        if len(dicomnb.catalog) != len(found):
            raise RuntimeError(f"{what}: {len(dicomnb.catalog)} instances in the catalog, {len(found)} in the store")
        return len(found)

    def run(self, method: str, kind: str) -> Run:
        self.empty()
        self.arrivals = []
        cancel = threading.Event() if kind == PAUSED else None
        half_at: list[float] = []
        calls: list[float] = []
        half = self.total // 2

        def progress(done: int, total: int) -> None:
            if done >= half and not half_at:
                half_at.append(time.perf_counter() - self.started)
                if cancel is not None:
                    cancel.set()

        def listener(_progress: object) -> None:
            calls.append(time.perf_counter() - self.started)

        unsubscribe = dicomnb.downloads.subscribe(listener) if kind == LISTENED else None
        busy, ours, server = busy_seconds(), cpu_seconds(), cpu_seconds(self.server)
        try:
            self.started = time.perf_counter()
            result = dicomnb.retrieve(self.node(method), self.study, method=method, calling=self.calling,
                                      progress=progress, cancel=cancel)
            returned = time.perf_counter() - self.started
            resumed = []
            if cancel is not None:
                resumed = dicomnb.downloads.resume()
                dicomnb.downloads.wait()
            seconds = time.perf_counter() - self.started
        finally:
            if unsubscribe is not None:
                unsubscribe()
        background = (busy_seconds() - busy) - (cpu_seconds() - ours) - (cpu_seconds(self.server) - server)
        what = f"{method} {kind}"
        if result.errors:
            raise RuntimeError(f"{what}: {result.errors[:3]}")
        present = self.check_store(what)
        got = Run(seconds, half_at[0], self.arrivals, max(0.0, background), present=present, calls=calls)
        if cancel is None:
            if result.cancelled or result.retrieved != self.total or present != self.total:
                raise RuntimeError(f"{what}: {result.message}; {present} instances in the store")
            if kind == LISTENED:  # what each of the listener's calls costs: one status of all the jobs
                got.status_ms = statistics.median(_seconds(dicomnb.downloads.status) for _ in range(50)) * 1000
            return got
        if not result.cancelled or result.retrieved >= self.total:
            raise RuntimeError(f"{what}: the retrieve was not paused ({result.message})")
        unfinished = [job for job in resumed if job.state != "complete" or job.result is None]
        if unfinished:
            raise RuntimeError(f"{what}: {len(unfinished)} jobs not complete after the resume: "
                               f"{[job.status().text for job in unfinished][:3]}")
        fetched = result.retrieved + sum(job.result.retrieved for job in resumed if job.result is not None)
        if fetched != present:
            raise RuntimeError(f"{what}: {present} instances in the store, {result.retrieved} fetched before the "
                               f"pause and {fetched - result.retrieved} after")
        # the store may still lack instances (a series the retrieve made no job of): a failure of the
        # pause, reported with the figures rather than raised
        got.returned, got.retrieved_before, got.resumed_jobs, got.listed = (returned, result.retrieved, len(resumed),
                                                                            result.expected)
        return got


def _seconds(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def measure(measures: Measures, methods: list[str], runs: int) -> dict[str, dict[str, list[Run]]]:
    """Each run of each method (one untimed pass first; plain, paused and listened in turn, the
    plain and paused runs swapping places every round, so that neither always follows the other)."""
    timed: dict[str, dict[str, list[Run]]] = {m: {PLAIN: [], PAUSED: [], LISTENED: []} for m in methods}
    with measures.timestamped():
        for run in range(runs + 1):
            for method in methods:
                for kind in (PLAIN, PAUSED, LISTENED) if run % 2 else (PAUSED, PLAIN, LISTENED):
                    got = measures.run(method, kind)
                    if not run:
                        continue
                    timed[method][kind].append(got)
                    extra = ""
                    if kind == PAUSED:
                        extra = (f", paused at {got.half:.3f} s, returned {got.returned - got.half:.3f} s later "
                                 f"with {got.retrieved_before} landed (the last {got.stop_tail:.3f} s before), "
                                 f"first arrival {got.restart:.3f} s after; {got.present} of {measures.total} "
                                 "in the store")
                    elif kind == LISTENED:
                        extra = f", {len(got.calls)} listener calls ({got.calls_per_s:.1f}/s)"
                    print(f"  {method} {kind}: {got.seconds:.3f} s (half at {got.half:.3f} s, others' CPU "
                          f"{got.background:.2f} s){extra}", flush=True)
    measures.empty()
    return timed


# --- results ------------------------------------------------------------------------------------

def summarise(timed: dict[str, dict[str, list[Run]]], instances: int) -> dict[str, object]:
    """The medians, the overheads and the verdicts. A paused run whose store ends incomplete fails
    its method, whatever its time (it did less work than the plain retrieve)."""
    def median(runs: list[Run], part: Callable[[Run], float]) -> float:
        return statistics.median(part(run) for run in runs)

    methods: dict[str, object] = {}
    for method, kinds in timed.items():
        plain, paused, listened = kinds[PLAIN], kinds[PAUSED], kinds[LISTENED]
        plain_s, paused_s, listened_s = (median(k, lambda r: r.seconds) for k in (plain, paused, listened))
        overhead = (paused_s / plain_s - 1) * 100
        best = (min(r.seconds for r in paused) / min(r.seconds for r in plain) - 1) * 100
        paired = [(p.seconds / a.seconds - 1) * 100 for a, p in zip(plain, paused, strict=True)]
        # the same pairs from half-way on: up to there both runs did the same work, so the first
        # half's spread (the machine's) leaves the pause's cost alone in the difference
        after_half = [((p.seconds - p.half) - (a.seconds - a.half)) / a.seconds * 100
                      for a, p in zip(plain, paused, strict=True)]
        complete = all(r.present == instances for r in paused)
        # what the pause leaves idle: its wait with nothing arriving, less the plain run's longest one
        dead = median(paused, lambda r: r.longest_wait) - median(plain, lambda r: r.longest_wait)
        calls_per_s = max(r.calls_per_s for r in listened)
        listener_cost = (listened_s / plain_s - 1) * 100
        status_ms = median(listened, lambda r: r.status_ms)
        listener_load = status_ms / 1000 * calls_per_s * 100
        spread = (max(r.seconds for r in plain) / min(r.seconds for r in plain) - 1) * 100
        methods[method] = {
            "plain_median_s": round(plain_s, 3),
            "plain_best_s": round(min(r.seconds for r in plain), 3),
            "plain_inst_per_s": round(instances / plain_s, 1),
            "plain_runs_s": [round(r.seconds, 3) for r in plain],
            "plain_spread_pct": round(spread, 1),
            "paused_median_s": round(paused_s, 3),
            "paused_best_s": round(min(r.seconds for r in paused), 3),
            "paused_runs_s": [round(r.seconds, 3) for r in paused],
            "overhead_pct": round(overhead, 1),
            "overhead_best_pct": round(best, 1),
            "overhead_each_run_pct": [round(p, 1) for p in paired],
            "after_half_paired_median_pct": round(statistics.median(after_half), 1),
            "after_half_each_run_pct": [round(p, 1) for p in after_half],
            "complete_after_resume": complete,
            "present_after_resume": [r.present for r in paused],
            "listed_when_paused": [r.listed for r in paused],
            # the dead time is part of the overhead that no spread of the runs hides: both must pass
            "pass": overhead < TARGET_OVERHEAD and dead / plain_s * 100 < TARGET_OVERHEAD and complete,
            "background_cpu_s": {kind: [round(r.background, 2) for r in runs] for kind, runs in kinds.items()},
            "split": {
                "half landed at s (plain)": round(median(plain, lambda r: r.half), 3),
                "second half s (plain)": round(median(plain, lambda r: r.seconds - r.half), 3),
                "longest wait after half-way s (plain)": round(median(plain, lambda r: r.longest_wait), 3),
                "half landed at s (paused)": round(median(paused, lambda r: r.half), 3),
                "cancel to return s": round(median(paused, lambda r: r.returned - r.half), 3),
                "last arrival to return s": round(median(paused, lambda r: r.stop_tail), 3),
                "return to first arrival s": round(median(paused, lambda r: r.restart), 3),
                "longest wait after half-way s (paused)": round(median(paused, lambda r: r.longest_wait), 3),
                "resume to done s": round(median(paused, lambda r: r.resume), 3),
                "dead time added s": round(dead, 3),
                "dead time added pct": round(dead / plain_s * 100, 1),
                "landed when it returned": round(median(paused, lambda r: r.retrieved_before)),
                "jobs resumed": round(median(paused, lambda r: r.resumed_jobs)),
            },
            "listener": {
                "median_s": round(listened_s, 3),
                "best_s": round(min(r.seconds for r in listened), 3),
                "cost_pct": round(listener_cost, 1),
                "cost_best_pct": round((min(r.seconds for r in listened) / min(r.seconds for r in plain) - 1) * 100,
                                       1),
                "calls": [len(r.calls) for r in listened],
                "max_calls_per_s": round(calls_per_s, 1),
                "shortest_gap_s": round(min(r.shortest_gap for r in listened), 3),
                "status_ms": round(status_ms, 3),
                "load_pct_of_one_core": round(listener_load, 3),
                "pass": calls_per_s <= TARGET_UPDATES * 1.1 and listener_load < TARGET_LISTENER,
            },
        }
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}, pydicom {pydicom.__version__}, "
                   f"dicomnb {dicomnb.__version__}, {platform.platform()}",
        "instances": instances,
        "series": SERIES,
        "series_parallel": dicomnb.downloads.series_parallel,
        "instance_parallel": dicomnb.downloads.instance_parallel,
        "target_overhead_pct": TARGET_OVERHEAD,
        "target_calls_per_s": TARGET_UPDATES,
        "target_listener_load_pct": TARGET_LISTENER,
        "methods": methods,
    }


def to_markdown(results: dict[str, object]) -> str:
    methods = cast("dict[str, dict[str, Any]]", results["methods"])
    lines = [
        SECTION, "",
        "Written by `benchmarks/bench_downloads.py` (figures in `results_downloads.json`).", "",
        f"- Date: {results['date']}",
        f"- Machine: {results['machine']}",
        f"- Study: {results['instances']:,} instances (CT_small.dcm copies with fresh UIDs, about 39 kB each) "
        f"in {results['series']} series, on Orthanc 1.10 with its DICOMweb plugin over loopback "
        "(`TCP_NODELAY=1`)",
        f"- dicomnb's cache (store, job states): {results.get('cache', 'not recorded')}. On this "
        "machine's disk (ext4 without a journal) a file created within minutes of many deletions "
        "costs up to 1 ms of system time more, which swung the runs by half: a tmpfs is the default.",
        f"- `dicomnb.retrieve` with the download manager's defaults: {results['series_parallel']} series at "
        f"a time; WADO-URI and WADO-RS one request per instance, {results['instance_parallel']} at a time "
        "within a series, in preview order; C-GET and C-MOVE one request per series (at IMAGE level, "
        "naming the missing instances, once some are stored); listing included.",
        "- Each run starts from an empty store, no download jobs and an empty catalog. Paused: the "
        "progress callback sets `cancel` once half the study has landed; the retrieve returns "
        "cancelled, then `downloads.resume()` and `downloads.wait()`; timed from the start of the "
        "retrieve to the end of the wait, then checked against what Orthanc holds: every instance of "
        "the study in the store once, each fetched once. One untimed pass of each, then the runs in "
        "turn (the plain and paused runs swap places every round); medians, and the best run of each "
        "beside them.",
        "- Others' CPU: seconds other processes of the machine took during a run (its busy time less "
        "this process's and Orthanc's); where it is high, the runs spread.",
        "- Dead time: the paused run's longest wait with no instance arriving after half-way (the "
        "pause) less the plain run's, as a share of the plain retrieve: the part of the overhead no "
        "spread of the runs hides. The verdict wants both it and the medians' overhead under 5%, and "
        "the study complete.",
        "- After half-way, paired: each paused run against the plain run beside it, from the "
        "moment half the study had landed to the end (up to there both did the same work, so the "
        "first half's spread drops out), as a share of the plain run; the median over the runs. "
        "Given beside the verdict, not in it.", "",
        "| method | plain (s) | inst/s | paused and resumed (s) | overhead | best vs best | each run | "
        "after half-way, paired | dead time added | others' CPU (s, median) | verdict (< 5%, complete) |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for method, m in methods.items():
        each = ", ".join(f"{p:+.1f}%" for p in m["overhead_each_run_pct"])
        background = statistics.median(v for runs in m["background_cpu_s"].values() for v in runs)
        why = []
        if m["overhead_pct"] >= TARGET_OVERHEAD:
            why.append(f"median {m['overhead_pct']:+.1f}%")
        if m["split"]["dead time added pct"] >= TARGET_OVERHEAD:
            why.append(f"dead time {m['split']['dead time added pct']:+.1f}%")
        if not m["complete_after_resume"]:
            why.append(f"incomplete, as few as {min(m['present_after_resume']):,} of {results['instances']:,} "
                       "instances in the store after the resume (the paused retrieve made jobs for "
                       f"{min(m['listed_when_paused']):,})")
        verdict = "PASS" if m["pass"] else "FAIL: " + "; ".join(why)
        lines.append(f"| {method} | {m['plain_median_s']:.3f} | {m['plain_inst_per_s']:,.0f} | "
                     f"{m['paused_median_s']:.3f} | {m['overhead_pct']:+.1f}% | {m['overhead_best_pct']:+.1f}% | "
                     f"{each} | {m['after_half_paired_median_pct']:+.1f}% | "
                     f"{m['split']['dead time added s'] * 1000:.0f} ms "
                     f"({m['split']['dead time added pct']:+.1f}%) | {background:.2f} | {verdict} |")
    lines += ["", "Where the paused run's time goes (medians, seconds from the start of the retrieve, or "
              "durations); \"waited\": the longest time after half-way with no instance arriving:", "",
              "| method | half landed (plain) | plain: second half | plain: waited | cancel set (paused) | "
              "cancel → return | last arrival → return | return → first arrival | paused: waited | "
              "resume → done | landed at return | jobs resumed |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for method, m in methods.items():
        s = m["split"]
        lines.append(f"| {method} | {s['half landed at s (plain)']:.3f} | {s['second half s (plain)']:.3f} | "
                     f"{s['longest wait after half-way s (plain)']:.3f} | {s['half landed at s (paused)']:.3f} | "
                     f"{s['cancel to return s']:.3f} | {s['last arrival to return s']:.3f} | "
                     f"{s['return to first arrival s']:.3f} | {s['longest wait after half-way s (paused)']:.3f} | "
                     f"{s['resume to done s']:.3f} | {s['landed when it returned']:.0f} | {s['jobs resumed']:.0f} |")
    lines += ["", "A subscribed listener (`downloads.subscribe`), counting its calls during a plain retrieve. "
              "\"Status\": what building one call's progress report (`downloads.status()`, 10 jobs) takes; "
              "\"load\": that, times the calls a second, as a share of one core: what the updates take from "
              "the transfer. The time with and without a listener is given too; \"spread\" is how far the "
              "plain runs alone lie apart (slowest / fastest), the scale any such difference is read on.", "",
              "| method | with listener (s) | without (s) | difference | best vs best | spread | calls (each run) | "
              "most calls/s | shortest gap (s) | status (ms) | load | verdict (≤ ~10/s, load < 1%) |",
              "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"]
    for method, m in methods.items():
        li = m["listener"]
        calls = ", ".join(str(c) for c in li["calls"])
        lines.append(f"| {method} | {li['median_s']:.3f} | {m['plain_median_s']:.3f} | {li['cost_pct']:+.1f}% | "
                     f"{li['cost_best_pct']:+.1f}% | {m['plain_spread_pct']:.0f}% | {calls} | "
                     f"{li['max_calls_per_s']:.1f} | {li['shortest_gap_s']:.3f} | {li['status_ms']:.2f} | "
                     f"{li['load_pct_of_one_core']:.2f}% | {'PASS' if li['pass'] else 'FAIL'} |")
    return "\n".join(lines) + "\n"


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each measure (default 5)")
    parser.add_argument("--instances", type=int, default=1000, help="instances in the study (default 1000)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated (default {','.join(METHODS)})")
    parser.add_argument("--out", type=Path, default=HERE, help="where results.md and results_downloads.json go")
    parser.add_argument("--cache-dir", type=Path, default=SHM if SHM.is_dir() and os.access(SHM, os.W_OK) else None,
                        help=f"where dicomnb's cache (store, job states) goes, in a folder of its own "
                             f"(default {SHM}, a tmpfs, when there is one; else the temporary folder)")
    options = parser.parse_args(args)
    methods = list(dict.fromkeys(m.strip() for m in options.methods.split(",") if m.strip()))
    if options.runs < 1 or options.instances < SERIES or not methods or set(methods) - set(METHODS):
        parser.error(f"--runs must be at least 1, --instances at least {SERIES}, --methods among {', '.join(METHODS)}")
    instances = options.instances // SERIES * SERIES
    root = Path(tempfile.mkdtemp(prefix="dicomnb-bench-downloads-"))
    cache = Path(tempfile.mkdtemp(prefix="dicomnb-bench-downloads-cache-", dir=options.cache_dir))
    os.environ.setdefault("DICOMNB_CONFIG_DIR", str(root / "config"))
    try:
        with orthanc_with_study(root, instances) as (peer, study), dicomnb.settings.override(cache_dir=cache):
            expected = study_paths(peer.http_port or 0, study)
            if len(expected) != instances:
                raise RuntimeError(f"Orthanc holds {len(expected)} instances of the study, not {instances}")
            timed = measure(Measures(peer, study, expected, cache), methods, options.runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    results = summarise(timed, instances)
    results["cache"] = f"{file_system(cache)} ({cache.parent})"
    publish(options.out, "results_downloads.json", results, to_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
