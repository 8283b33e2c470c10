"""Select stage: rank target submodules by intrinsic dimension, with cheap proxy selectors beside it."""

from .ranking import (
    RankedTarget,
    Ranking,
    data_dir_for,
    dataset_for_ranking,
    rank_correlations,
    skip_bad_images_for,
)
from .run import proxy_rankings, run_select
from .selectors import PROBE_SELECTORS, SELECTORS, declare_ties, rank_by_proxy, rank_from_probe

__all__ = [
    "PROBE_SELECTORS",
    "SELECTORS",
    "RankedTarget",
    "Ranking",
    "data_dir_for",
    "dataset_for_ranking",
    "declare_ties",
    "proxy_rankings",
    "rank_by_proxy",
    "rank_correlations",
    "rank_from_probe",
    "run_select",
    "skip_bad_images_for",
]
