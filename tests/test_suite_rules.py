"""Rules the test suite keeps about itself."""

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_no_test_reads_a_stopwatch():
    """Timings belong in benchmarks/: a test that asserts a wall-clock time fails on a busy machine. Tests may wait
    on a deadline (time.monotonic), never measure (perf_counter, time.time, process_time, timeit)."""
    stopwatch = re.compile(r"perf_counter|time\.time\(|process_time|\btimeit\b")
    found = [f"{p.name}:{i}" for p in sorted(TESTS.glob("*.py")) if p.name != Path(__file__).name
             for i, line in enumerate(p.read_text().splitlines(), 1) if stopwatch.search(line)]
    assert not found, f"tests reading a stopwatch: {found}"
