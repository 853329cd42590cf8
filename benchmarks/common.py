"""What the network benchmarks share: the study they retrieve, and an Orthanc of their own holding it.

The study is one study of :data:`SERIES` series of copies of pydicom's ``CT_small.dcm``
with fresh UIDs (about 39 kB each), uploaded with REST ``POST /instances``, 4 at a time,
into an Orthanc started on free loopback ports by the test suite's ``tests/peers.py`` and
stopped by PID at the end.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import peers  # noqa: E402  (tests/peers.py: starting and stopping Orthanc)
from pydicom.uid import generate_uid  # noqa: E402

SERIES = 10


def make_study(count: int) -> tuple[str, list[bytes]]:
    """One study of SERIES series: CT_small copies with fresh UIDs, as Part 10 bytes."""
    study = generate_uid()
    blobs = []
    for ds in peers.ct_copies(study, SERIES, count // SERIES):
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


@contextlib.contextmanager
def orthanc_with_study(root: Path, instances: int) -> Iterator[tuple[peers.Peer, str]]:
    """An Orthanc of its own under ``root``, loaded with a study of ``instances``; yields it and the study."""
    with peers.run_orthanc(root / "orthanc", load=False) as peer:
        study, blobs = make_study(instances)
        started = time.perf_counter()
        upload(peer.http_port or 0, blobs)
        print(f"Orthanc (PID {peer.pid}) loaded with {instances} instances in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        yield peer, study
