import threading
import time

import pytest

from colorcube.run.batch import StageTimes, run_overlapped


def _run(items, *, batch=3, workers=2, key=lambda w: w % 3, prepare=None, network=None, finish=None, **kw):
    calls, rows = [], []
    run_overlapped(items, prepare=prepare or (lambda i: (None, i)), key=key,
                   network=network or (lambda ws: calls.append(list(ws)) or [w * 10 for w in ws]),
                   finish=finish or (lambda w, r: (w, r)), collect=rows.append, batch=batch, workers=workers, **kw)
    return calls, rows


def test_every_item_once_batches_of_one_key_at_most_batch():
    calls, rows = _run(range(40), batch=4)
    assert sorted(rows) == [(i, 10 * i) for i in range(40)]
    assert all(len(c) <= 4 and len({w % 3 for w in c}) == 1 for c in calls)
    assert sum(len(c) for c in calls) == 40


def test_full_batches_when_preparing_keeps_up():
    calls, _ = _run(range(48), batch=8, key=lambda w: 0)
    sizes = [len(c) for c in calls]
    assert sizes.count(8) >= 5  # the 50 ms patience only cuts a batch short when nothing arrives


def test_finished_items_skip_the_network_and_are_collected():
    calls, rows = _run(range(10), prepare=lambda i: (("skipped", i), None) if i % 2 else (None, i))
    assert sorted(w for c in calls for w in c) == [0, 2, 4, 6, 8]
    assert sorted(r for r in rows if r[0] == "skipped") == [("skipped", i) for i in range(1, 10, 2)]


def test_memory_stays_bounded_when_finishing_is_slow():
    """A slow last stage must hold the others back, not let prepared items pile up."""
    live, peak, lock = [0], [0], threading.Lock()

    def prepare(i):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        return None, i

    def finish(w, r):
        time.sleep(0.01)
        with lock:
            live[0] -= 1
        return w

    batch, workers = 2, 1
    _, rows = _run(range(60), batch=batch, workers=workers, key=lambda w: 0, prepare=prepare, finish=finish)
    assert sorted(rows) == list(range(60))
    # queue 2 * batch, pending max(batch, 4 * batch), finishing 2 * workers, preparing 2 * workers, one in hand
    assert peak[0] <= 2 * batch + 4 * batch + 4 * workers + batch + 1


def test_a_raising_stage_ends_the_run_with_its_error():
    def finish(w, r):
        if w == 7:
            raise OSError(28, "No space left on device")
        return w

    with pytest.raises(OSError, match="No space"):
        _run(range(30), finish=finish)

    def prepare(i):
        if i == 5:
            raise RuntimeError("prepare broke")
        return None, i

    with pytest.raises(RuntimeError, match="prepare broke"):
        _run(range(200), prepare=prepare)


def test_stage_times_record_busy_time_and_batches():
    times = StageTimes()

    def network(ws):
        time.sleep(0.02)
        return ws

    _run(range(12), batch=4, key=lambda w: 0, network=network, times=times)
    assert times.seconds["network"] >= 0.02 * len(times.batches) and sum(times.batches) == 12
    assert set(times.seconds) == {"prepare", "network", "finish"} and times.wall > 0
    assert "network batches of" in times.summary()
