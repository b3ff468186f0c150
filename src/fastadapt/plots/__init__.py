"""Figures and tables: a run's ``report.png`` (:mod:`.run`), ``fastadapt compare``
(:mod:`.compare`) and ``fastadapt report`` (:mod:`.report`)."""

from fastadapt.plots.compare import (
    COMPARE_FILE,
    CurveGroup,
    RunBudget,
    compare_efficiency,
    compare_runs,
    comparison_table,
    efficiency_table,
    group_runs,
    plot_comparison,
    plot_efficiency,
    run_budget,
)
from fastadapt.plots.report import plot_report, report_runs
from fastadapt.plots.run import plot_run

__all__ = [
    "COMPARE_FILE",
    "CurveGroup",
    "RunBudget",
    "compare_efficiency",
    "compare_runs",
    "comparison_table",
    "efficiency_table",
    "group_runs",
    "plot_comparison",
    "plot_efficiency",
    "plot_report",
    "plot_run",
    "report_runs",
    "run_budget",
]
