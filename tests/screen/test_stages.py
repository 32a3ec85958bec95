"""Reading ahead of the model and writing behind it: same items, same order, errors surface."""

from __future__ import annotations

import threading

import pytest

from p2t_screen.screen.stages import ReadAhead, WriteBehind


def test_read_ahead_yields_every_item_in_order():
    assert list(ReadAhead(range(10_000), depth=7)) == list(range(10_000))


def test_an_error_while_reading_surfaces_where_it_happened():
    def source():
        yield from (1, 2, 3)
        raise ValueError("record 4 is bad")

    got = []
    with pytest.raises(ValueError, match="record 4 is bad"):
        for item in ReadAhead(source(), depth=2):
            got.append(item)
    assert got == [1, 2, 3]


def test_a_consumer_that_stops_early_stops_the_reader():
    produced = []

    def source():
        for i in range(1_000_000):
            produced.append(i)
            yield i

    before = threading.active_count()
    reader = ReadAhead(source(), depth=4)
    for item in reader:
        if item == 10:
            break
    assert threading.active_count() == before  # the reader thread has ended
    assert len(produced) < 100  # it ran at most `depth` items ahead, then stopped


def test_write_behind_writes_everything_in_order_by_close():
    written = []
    behind = WriteBehind(written.append, depth=2)
    for i in range(500):
        behind.put(i)
    behind.close()
    assert written == list(range(500))


def test_a_write_error_is_raised_in_the_caller_and_nothing_after_it_is_written():
    written = []

    def write(item):
        if item == 3:
            raise OSError(28, "No space left on device")
        written.append(item)

    behind = WriteBehind(write, depth=1)
    with pytest.raises(OSError, match="No space left"):
        for i in range(100):
            behind.put(i)
        behind.close()
    behind.close()  # a second close neither hangs nor raises again
    assert written == [0, 1, 2]


def test_a_source_that_pauses_does_not_hold_back_what_it_gave():
    """Items read but not yet queued reach an idle consumer: here the source waits for the
    consumer to have item 2 before giving item 3 (with chunks of 64, a reader that held its
    partial chunk would wait forever; the generous limit only ends such a hang)."""
    seen_two = threading.Event()
    waited = []

    def source():
        yield 1
        yield 2
        waited.append(seen_two.wait(timeout=120))
        yield 3

    got = []
    for item in ReadAhead(source(), depth=4096, chunk=64):
        got.append(item)
        if item == 2:
            seen_two.set()
    assert got == [1, 2, 3] and waited == [True]
