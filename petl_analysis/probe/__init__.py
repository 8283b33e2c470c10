"""Probe stage: local intrinsic dimension of ViT submodules by random-subspace training."""

from .probe import (
    Baseline,
    D90,
    ProbeConfig,
    ProbeResult,
    TargetResult,
    LR_SCALINGS,
    RESOLVED_IMAGES,
    default_probe_recipe,
    expand_targets,
    probe_trial,
    run_probe,
    theta_lr,
    unresolved_gain,
)
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
