"""Probe stage: local intrinsic dimension of ViT submodules by random-subspace training."""

from .config import LR_SCALINGS, ProbeConfig, default_probe_recipe, theta_lr
from .d90 import D90
from .result import RESOLVED_IMAGES, Baseline, ProbeResult, TargetResult, unresolved_gain
from .search import expand_targets, run_probe
from .trial import probe_trial
from .projections import PROJECTIONS, Projection, make_projection
from .subspace import SubspaceModel, all_parameters, subspace_size

__all__ = [
    "Baseline",
    "D90",
    "LR_SCALINGS",
    "PROJECTIONS",
    "ProbeConfig",
    "ProbeResult",
    "RESOLVED_IMAGES",
    "Projection",
    "SubspaceModel",
    "all_parameters",
    "TargetResult",
    "default_probe_recipe",
    "expand_targets",
    "make_projection",
    "probe_trial",
    "run_probe",
    "subspace_size",
    "theta_lr",
    "unresolved_gain",
]
