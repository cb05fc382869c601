import numpy as np
import pytest

from streamdetect.pipeline.windows import Windower
from streamdetect.sources.ringbuffer import RingBuffer

SR = 1000  # small rate keeps the arithmetic readable; the code is rate-agnostic


def _feed(windower, signal, block_sizes):
    out, pos, i = [], 0, 0
    while pos < signal.size:
        n = block_sizes[i % len(block_sizes)]
        out.extend(windower.push(signal[pos : pos + n]))
        pos += n
        i += 1
    return out


@pytest.mark.parametrize("blocks", [[1], [7], [333], [1000], [4321], [1, 999, 17, 2500, 3]])
def test_windows_are_exact_whatever_the_block_sizes(blocks):
    signal = np.arange(10_500, dtype=np.float32)  # sample value == its index: checks content and timing
    w = Windower(window_s=3.0, hop_s=1.0, sample_rate=SR)
    windows = _feed(w, signal, blocks)
    assert [x.start_s for x in windows] == [float(k) for k in range(8)]
    for k, x in enumerate(windows):
        assert x.index == k and x.n_samples == 3000
        np.testing.assert_array_equal(x.samples, signal[k * 1000 : k * 1000 + 3000])
    tail = list(w.finish())
    assert len(tail) == 1 and tail[0].start_sample == 8000 and tail[0].n_samples == 2500
    np.testing.assert_array_equal(tail[0].samples, signal[8000:])


def test_recording_shorter_than_a_window_is_analysed_once():
    w = Windower(3.0, 1.0, SR)
    assert list(w.push(np.ones(1200, np.float32))) == []
    (only,) = list(w.finish())
    assert only.start_s == 0.0 and only.n_samples == 1200


def test_no_tail_window_when_the_last_window_reached_the_end():
    w = Windower(3.0, 1.0, SR)
    assert len(list(w.push(np.zeros(5000, np.float32)))) == 3
    assert list(w.finish()) == []


def test_fractional_hop_keeps_exact_sample_positions():
    w = Windower(window_s=0.5, hop_s=0.25, sample_rate=48_000)
    windows = list(w.push(np.zeros(48_000, np.float32)))
    assert [x.start_sample for x in windows] == [12_000 * k for k in range(len(windows))]
    assert windows[-1].end_s == 1.0


def test_gap_drops_overlapping_windows_and_keeps_time():
    w = Windower(3.0, 1.0, SR)
    first = list(w.push(np.zeros(4000, np.float32)))  # windows at 0 and 1 s
    w.skip(1500)  # audio 4.0-5.5 s lost
    after = list(w.push(np.zeros(6000, np.float32)))  # up to 11.5 s
    assert [x.start_s for x in first] == [0.0, 1.0]
    assert [x.start_s for x in after] == [6.0, 7.0, 8.0]  # 2..5 overlap the gap
    assert w.dropped_windows == 4


def test_ring_buffer_counts_overruns_instead_of_hiding_them():
    ring = RingBuffer(100)
    ring.write(np.arange(80, dtype=np.float32))
    ring.write(np.arange(80, 150, dtype=np.float32))
    assert ring.overrun_samples == 50 and ring.overrun_events == 1
    start, data = ring.read_new()
    assert start == 50 and data.tolist() == list(range(50, 150))
    ring.write(np.arange(150, 400, dtype=np.float32))  # bigger than the ring
    start, data = ring.read_new()
    assert ring.overrun_samples == 200 and start == 300 and data.tolist() == list(range(300, 400))


def test_ring_buffer_peek_refuses_samples_it_no_longer_holds():
    ring = RingBuffer(10)
    ring.write(np.arange(25, dtype=np.float32))
    with pytest.raises(IndexError):
        ring.peek(10, 5)
    assert ring.peek(15, 10).tolist() == list(range(15, 25))
