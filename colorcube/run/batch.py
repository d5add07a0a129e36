"""Many images at once: the network batched across images, the stages overlapped.

Three stages run side by side, joined by bounded queues so that memory stays
bounded and the slowest stage sets the pace:

1. *prepare* (a thread pool): read and decode each image, anything else it needs;
2. *network* (one thread, all of torch's threads): images of one network-input
   shape are batched, up to ``batch`` at a time;
3. *finish* (a thread pool): the full-resolution stage and the writes.

Threads suffice: image decoding, torch and the numba kernels release the GIL.
The network takes its turns alone (:class:`_Turns`): torch's threads meet at a
barrier after every layer, so a core taken by another stage for a moment stalls
all of them (``python benchmarks/archive.py`` prints the network's share of the
attainable convolution throughput inside the archive).
:func:`run_overlapped` knows nothing of colour; :mod:`colorcube.run.archive` gives
it the three stage functions. :class:`StageTimes` records each stage's busy time
(``colorcube archive -v`` prints it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

__all__ = ["StageTimes", "run_overlapped"]

_DONE = object()


class _Turns:
    """A shared/exclusive lock with exclusive preference: the other stages share the cores,
    the network takes them alone; once it waits, no new shared turn starts."""

    def __init__(self):
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0

    def shared(self):
        return _Turn(self, exclusive=False)

    def exclusive(self):
        return _Turn(self, exclusive=True)

    def _acquire(self, exclusive: bool) -> None:
        with self._cond:
            if exclusive:
                self._waiting += 1
                self._cond.wait_for(lambda: not self._exclusive and self._shared == 0)
                self._waiting -= 1
                self._exclusive = True
            else:
                self._cond.wait_for(lambda: not self._exclusive and self._waiting == 0)
                self._shared += 1

    def _release(self, exclusive: bool) -> None:
        with self._cond:
            if exclusive:
                self._exclusive = False
            else:
                self._shared -= 1
            self._cond.notify_all()


class _Turn:
    def __init__(self, turns: _Turns, *, exclusive: bool):
        self.turns, self.exclusive = turns, exclusive

    def __enter__(self):
        self.turns._acquire(self.exclusive)

    def __exit__(self, *exc):
        self.turns._release(self.exclusive)


@dataclasses.dataclass
class StageTimes:
    """Busy seconds per stage, summed over threads, and the network's batch sizes."""

    seconds: dict = dataclasses.field(default_factory=dict)
    batches: list = dataclasses.field(default_factory=list)
    wall: float = 0.0

    def __post_init__(self):
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def timed(self, stage: str, fn, *args, turn=None):
        """``fn(*args)`` (inside ``turn``, a :class:`_Turns` context), its time added to ``stage``."""
        with turn or contextlib.nullcontext():
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self.add(stage, time.perf_counter() - t0)

    def summary(self) -> str:
        """One line: each stage's busy seconds and share of the wall time, the mean batch."""
        parts = [f"{k} {v:.1f} s ({v / self.wall:.0%})" if self.wall > 0 else f"{k} {v:.1f} s"
                 for k, v in self.seconds.items()]
        if self.batches:
            parts.append(f"{len(self.batches)} network batches of {sum(self.batches) / len(self.batches):.1f} images")
        return f"wall {self.wall:.1f} s; busy: " + ", ".join(parts)


def run_overlapped(items, *, prepare, key, network, finish, collect, batch: int, workers: int,
                   times: StageTimes | None = None) -> None:
    """Run ``items`` through prepare -> network (batched) -> finish, overlapped.

    Parameters
    ----------
    items : iterable of work descriptions (anything ``prepare`` takes)
    prepare : ``prepare(item) -> (row, work)``; ``work`` None means the item is finished
        (skipped or failed) and ``row`` is passed to ``collect`` at once
    key : ``key(work) -> hashable``; only works of equal key share a network batch
    network : ``network(list of work) -> list of results``, one per work, in order
    finish : ``finish(work, result) -> row``
    collect : ``collect(row)``, called from the calling thread, one row per item
    batch : int >= 1, most works per network call
    workers : int >= 1, threads of the prepare pool and of the finish pool
    times : StageTimes, optional; gets "prepare", "network" and "finish" busy time
    The three stage functions must not raise: each turns its item's failure into
    the item's row (a raise ends the run, as a full disk must). At most about
    ``6 * batch + 3 * workers`` items (prepared works wait for their batch to fill up to ``4 * batch``; above
    that the largest group runs part-full) are held in memory at once.
    """
    times = times or StageTimes()
    turns = _Turns()
    max_pending = 4 * batch
    prepared: queue.Queue = queue.Queue(maxsize=2 * batch)
    rows: queue.Queue = queue.Queue()
    errors: list = []
    finishing = threading.BoundedSemaphore(2 * workers)
    stop = threading.Event()

    def feed():
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="colorcube-prepare") as pool:
                slots = threading.BoundedSemaphore(2 * workers)

                def one(item):
                    try:
                        prepared.put(times.timed("prepare", prepare, item, turn=turns.shared()))
                    except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                        errors.append(exc)
                        prepared.put(None)
                    finally:
                        slots.release()

                for item in items:
                    slots.acquire()
                    if stop.is_set():
                        break
                    pool.submit(one, item)
        finally:
            prepared.put(_DONE)

    def run_batch(works, pool):
        results = times.timed("network", network, works, turn=turns.exclusive())
        times.batches.append(len(works))
        for work, result in zip(works, results):
            finishing.acquire()  # back-pressure: the network waits when finishing lags

            def done(work=work, result=result):
                try:
                    rows.put(times.timed("finish", finish, work, result, turn=turns.shared()))
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)
                    rows.put(None)
                finally:
                    finishing.release()

            pool.submit(done)

    def drain():
        while True:
            try:
                row = rows.get_nowait()
            except queue.Empty:
                return
            if row is not None:
                collect(row)

    t0 = time.perf_counter()
    feeder = threading.Thread(target=feed, name="colorcube-feed", daemon=True)
    feeder.start()
    pending: dict = {}
    n_pending = 0
    feeder_done = False
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="colorcube-finish") as pool:
            while not errors:
                try:
                    got = prepared.get(timeout=0.05 if n_pending else 0.5)
                except queue.Empty:
                    drain()
                    if n_pending:  # nothing new is coming soon: run the largest group rather than wait
                        k = max(pending, key=lambda g: len(pending[g]))
                        n_pending -= len(pending[k])
                        run_batch(pending.pop(k), pool)
                    continue
                if got is _DONE:
                    feeder_done = True
                    break
                if got is None:
                    continue
                row, work = got
                if work is None:
                    collect(row)
                    continue
                group = pending.setdefault(key(work), [])
                group.append(work)
                n_pending += 1
                if len(group) >= batch or n_pending > max_pending:
                    k = key(work) if len(group) >= batch else max(pending, key=lambda g: len(pending[g]))
                    n_pending -= len(pending[k])
                    run_batch(pending.pop(k), pool)
                drain()
            if not errors:
                for k in list(pending):
                    run_batch(pending.pop(k), pool)
    finally:
        stop.set()
        while not feeder_done:  # unblock the feeder's puts so that it ends
            feeder_done = prepared.get() is _DONE
    feeder.join()
    drain()
    times.wall += time.perf_counter() - t0
    if errors:
        raise errors[0]
