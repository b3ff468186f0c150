"""Progress off a terminal: a plain line every interval and one for the last iteration."""

from __future__ import annotations

import io

from fastadapt.run.progress import TrainProgress


def _record(iteration: int) -> dict[str, float]:
    return {"iteration": iteration, "env_steps": 1000 * iteration,
            "env_steps_per_second": 500.0, "return_before": -3.0, "return_after": -1.5}


def test_a_line_per_interval_off_a_terminal_and_one_at_the_end() -> None:
    now = [0.0]
    stream = io.StringIO()  # not a terminal
    with TrainProgress(10, 0, stream=stream, interval_s=30.0, clock=lambda: now[0]) as progress:
        for iteration in range(1, 11):
            now[0] = 12.0 * iteration  # 12 s per iteration: lines at 36 s, 72 s, 108 s, end
            progress.update(_record(iteration))
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["3/10", "6/10", "9/10", "10/10"]
    assert lines[-1].startswith("iteration 10/10  env steps 10,000  2.0 min  500 steps/s")
    assert "return -3.0 → -1.5" in lines[-1]


def test_quiet_prints_nothing() -> None:
    stream = io.StringIO()
    with TrainProgress(2, 0, enabled=False, stream=stream, interval_s=0.0) as progress:
        progress.update(_record(1))
        progress.update(_record(2))
    assert stream.getvalue() == ""
