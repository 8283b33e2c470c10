"""Probe stage: local intrinsic dimension of ViT submodules by random-subspace training."""

from .config import LR_SCALINGS, ProbeConfig, default_probe_recipe, theta_lr
from .d90 import D90
from .projections import PROJECTIONS, Projection, make_projection
from .result import RESOLVED_IMAGES, Baseline, ProbeResult, TargetResult, unresolved_gain
from .search import expand_targets, probe_baselines, run_probe
from .subspace import SubspaceModel, all_parameters, subspace_size
from .trial import probe_trial

__all__ = [
    "D90",
    "LR_SCALINGS",
    "PROJECTIONS",
    "RESOLVED_IMAGES",
    "Baseline",
    "ProbeConfig",
    "ProbeResult",
    "Projection",
    "SubspaceModel",
    "TargetResult",
    "all_parameters",
    "default_probe_recipe",
    "expand_targets",
    "make_projection",
    "probe_baselines",
    "probe_trial",
    "run_probe",
    "subspace_size",
    "theta_lr",
    "unresolved_gain",
]
