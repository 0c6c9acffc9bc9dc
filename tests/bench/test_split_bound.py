"""``bench.split_bound`` counts only the writer's flushes that lie inside the intake's window."""

from __future__ import annotations

from bench.split_bound import inside, writer_rate


def _flush(start: float, end: float, events: int = 100_000, cpu: float = 1.0) -> dict:
    return {"start": start, "end": end, "cpu_s": cpu, "events": events}


def test_only_flushes_wholly_inside_the_window_count():
    flushes = [_flush(9.0, 10.5), _flush(10.5, 11.5), _flush(11.6, 12.4), _flush(12.5, 13.2)]
    assert inside(flushes, 10.5, 12.4) == flushes[1:3]
    assert inside(flushes, 10.6, 12.0) == []


def test_the_writer_rate_is_over_the_flushes_own_wall_time():
    got = writer_rate([_flush(0.0, 1.0, cpu=0.9), _flush(5.0, 6.5, 50_000, cpu=1.6)])
    assert got["events"] == 150_000
    assert got["wall_s"] == 2.5  # the 4 s between the flushes is not the writer's
    assert got["cpu_s"] == 2.5
    assert got["events_per_s"] == 60_000
    assert got["flush_walls_s"] == [1.0, 1.5]
    assert writer_rate([])["events_per_s"] is None
