"""Run batches of file work in worker processes, so header reading uses every core.

Header parsing is pure Python, so threads would serialise on the GIL; processes do not.
One pool per Python process is started on first use and kept (starting one costs more
than reading a thousand headers). The ``forkserver`` start method is used where it
exists: forking a Jupyter kernel, which runs threads, is not safe.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from dicomnb.core.settings import settings

__all__ = ["map_batches", "pool_running", "shutdown"]

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_size = 0


def _ignore_interrupts() -> None:
    """A worker's initializer: Ctrl-C (a kernel's interrupt or shutdown) is the parent's to handle.

    Without it every worker prints a KeyboardInterrupt traceback when the kernel is interrupted;
    the parent still stops them (it shuts the pool down).
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _get_pool(workers: int) -> ProcessPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != workers:
            if _pool is not None:
                _pool.shutdown(wait=False, cancel_futures=True)
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            if "forkserver" in methods:
                context.set_forkserver_preload(["dicomnb.core.classify"])
            _pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_ignore_interrupts)
            _pool_size = workers
        return _pool


def pool_running() -> bool:
    """Whether the worker processes run now (started by a large import, or a volume)."""
    return _pool is not None


def shutdown() -> None:
    """Stop the worker processes (they are started again on the next large batch)."""
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None


atexit.register(shutdown)


def map_batches(
    function: Callable[..., R], batches: Iterable[tuple[Any, ...]], *, parallel: bool = True
) -> Iterator[R]:
    """Yield ``function(*batch)`` for every batch, in the order they finish.

    With ``parallel`` false or ``settings.workers == 1`` the batches run here, one by one.
    A pool that breaks (a worker killed, or workers that cannot start) is shut down and
    the batches it held, and the rest, run here; the next call starts a new pool.
    """
    workers = settings.workers
    if not parallel or workers <= 1:
        for batch in batches:
            yield function(*batch)
        return
    pool = _get_pool(workers)
    pending: dict[Future[R], tuple[Any, ...]] = {}
    window = 2 * workers
    iterator = iter(batches)

    def finish_here(first: tuple[Any, ...] | None) -> Iterator[R]:
        # The pool broke (a worker killed, or workers that cannot start): nothing is lost,
        # what was sent to it and what is left runs in this process.
        LOGGER.warning("the worker processes are not usable; finishing the batches in this process")
        shutdown()
        for lost in ([first] if first is not None else []) + list(pending.values()):
            yield function(*lost)
        for rest in iterator:
            yield function(*rest)

    exhausted = False
    while pending or not exhausted:
        while not exhausted and len(pending) < window:
            try:
                batch = next(iterator)
            except StopIteration:
                exhausted = True
                break
            try:
                pending[pool.submit(function, *batch)] = batch
            except (BrokenProcessPool, RuntimeError):
                yield from finish_here(batch)
                return
        if not pending:
            break
        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            batch = pending.pop(future)
            try:
                result = future.result()
            except BrokenProcessPool:
                yield from finish_here(batch)
                return
            yield result
