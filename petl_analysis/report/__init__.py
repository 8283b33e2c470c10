"""Report stage: accuracy-vs-parameters trade-off (Pareto front, PE score), ID curves and heatmaps, CSV tables,
``report.md`` and a self-contained ``report.html``."""

from .pareto import KADAPTATION_M0, PPT_M0, front_order, pareto_front, pe_score, seeds_differ, within_spread
from .render import ReportFiles, write_report

__all__ = [
    "KADAPTATION_M0",
    "PPT_M0",
    "ReportFiles",
    "front_order",
    "pareto_front",
    "pe_score",
    "seeds_differ",
    "within_spread",
    "write_report",
]
