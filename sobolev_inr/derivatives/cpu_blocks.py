"""Row blocks of the fused engine and the pool of single-threaded CPU workers that runs them.

On CPU the fused engine (:mod:`.fused`) cuts the batch into row blocks (:func:`row_blocks`) and
hands each of torch's intra-op threads its own blocks (:func:`run_blocks`). The workers run their
operations single-threaded, yet leave the process-wide thread count as they found it
(:func:`worker_pool` says how).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, NamedTuple, Optional, Tuple

import torch

BLOCK_ELEMENTS = 1 << 20
"""On CPU the fused engine cuts the batch into row blocks whose (rows, width) tensors hold about this
many elements (4 MB in float32), and gives each of torch's intra-op threads its own blocks to run
with single-threaded operations. Its many elementwise passes then run on data still in that core's
cache, the allocator recycles block-sized buffers instead of mapping fresh pages for every tensor,
and the threads never wait for each other inside an operation (which matters on a machine shared
with other jobs). On other devices the whole batch is one block."""

RECOMPUTE_BLOCK_ELEMENTS = 1 << 23
"""On a GPU the whole batch is one block, but with ``recompute_tangents`` the rows are cut into blocks whose
(rows, width) tensors hold at most this many elements (32 MB in float32), processed one after another:
the backward pass then recomputes and holds one block's tangents at a time, which is what makes
recomputing save memory (on the CPU the cache-sized blocks already do)."""

WORKER_START_TIMEOUT_S = 60.0
"""How long :func:`worker_pool` waits for its workers to start before it gives up with an error."""


class _Pool(NamedTuple):
    executor: ThreadPoolExecutor
    size: int  # number of workers
    pid: int  # the process that started them (a forked child starts its own)


_pool: Optional[_Pool] = None
_pool_lock = threading.Lock()


def _in_new_thread(fn: Callable, *args):
    """``fn(*args)`` run in a thread started for it. A new thread's first use of torch reads the
    process-wide intra-op thread count, so this reads (``torch.get_num_threads``) or writes
    (``torch.set_num_threads``) that value without touching the calling thread's own count."""
    result = []
    thread = threading.Thread(target=lambda: result.append(fn(*args)), name="sobolev_inr-threads")
    thread.start()
    thread.join()
    return result[0]


def _single_threaded() -> None:
    """Worker initialiser: this thread's operations use one core.

    ``torch.get_num_threads()`` first runs the thread's one-time lazy initialisation (which reads the
    process-wide count); only then ``torch.set_num_threads(1)``, which sets this thread's count and,
    as a side effect, the process-wide one. Done in the other order, the lazy initialisation would
    run later and take this thread back to whatever the process-wide count is by then.
    """
    torch.get_num_threads()
    torch.set_num_threads(1)


def worker_pool(count: int) -> ThreadPoolExecutor:
    """A pool of ``count`` single-threaded workers, made on first use (again after a fork, or for more).

    ``torch.set_num_threads`` in a worker also sets the process-wide count that every new thread
    starts from. So the pool is started in full before it is used: the process-wide count is read
    (from a new thread), ``count`` tasks wait at a barrier until every worker has run its
    initialiser, and then the count is written back (from a new thread, so that the calling thread's
    own count is not touched either). Afterwards the workers keep 1 and the process is as before.
    """
    global _pool
    with _pool_lock:
        pid = os.getpid()
        if _pool is not None and _pool.size >= count and _pool.pid == pid:
            return _pool.executor
        if _pool is not None and _pool.pid == pid:
            _pool.executor.shutdown(wait=False)
        process_wide = _in_new_thread(torch.get_num_threads)
        executor = ThreadPoolExecutor(count, thread_name_prefix="sobolev_inr", initializer=_single_threaded)
        try:
            # A task that blocks until ``count`` tasks run at once makes the pool start all its workers.
            started = threading.Barrier(count, timeout=WORKER_START_TIMEOUT_S)
            for future in [executor.submit(started.wait) for _ in range(count)]:
                future.result()
        except BaseException:
            executor.shutdown(wait=False)
            raise
        finally:
            _in_new_thread(torch.set_num_threads, process_wide)
        _pool = _Pool(executor, count, pid)
        return executor


def row_blocks(n: int, width: int, device: torch.device, recompute: bool = False) -> List[Tuple[int, int]]:
    """Row ranges (start, stop) of the blocks: on the CPU cache-sized, a multiple of the thread count where
    that is worth it; elsewhere one block, or blocks of :data:`RECOMPUTE_BLOCK_ELEMENTS` with ``recompute``."""
    if n == 0:
        return [(0, n)]
    if device.type != "cpu":
        count = max(1, -(-n * width // RECOMPUTE_BLOCK_ELEMENTS)) if recompute else 1
    else:
        count = max(1, -(-n * width // BLOCK_ELEMENTS))
        threads = torch.get_num_threads()
        if threads > 1 and n >= 512 * threads:
            count = -(-count // threads) * threads
    size = -(-n // count)
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def run_blocks(work: Callable[[List[int]], object], num_blocks: int, device: torch.device = torch.device("cpu")
               ) -> List[object]:
    """Runs ``work(block_ids)`` for the blocks split over torch's threads; returns the results per worker.

    Worker k takes blocks k, k + T, ... (T = torch.get_num_threads()), with single-threaded
    operations and gradients off; one worker, or one block, runs in the calling thread as is, and so do
    the blocks of a GPU batch (one after another: the device runs each block's kernels in parallel).
    """
    threads = 1 if device.type != "cpu" else min(torch.get_num_threads(), num_blocks)
    if threads <= 1:
        return [work(list(range(num_blocks)))]

    def task(k: int):
        with torch.no_grad():
            return work(list(range(k, num_blocks, threads)))

    futures = [worker_pool(threads).submit(task, k) for k in range(threads)]
    return [f.result() for f in futures]
