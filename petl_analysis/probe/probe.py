"""Local intrinsic dimension of ViT submodules: the probe stage (kept as an import path).

The stage lives in four modules: :mod:`~petl_analysis.probe.config` (what to probe), :mod:`~petl_analysis.probe.result`
(what was measured, ``probe.json``), :mod:`~petl_analysis.probe.trial` (one training, in a worker) and
:mod:`~petl_analysis.probe.search` (the driver, :func:`run_probe`). Patch ``search.probe_trial``, not this module's.
"""

from __future__ import annotations

from .config import HEAD_MODES, LR_SCALINGS, ProbeConfig, default_probe_recipe, theta_lr
from .d90 import D90
from .result import RESOLVED_IMAGES, Baseline, ProbeResult, TargetResult, unresolved_gain
from .search import expand_targets, run_probe
from .trial import ProbeTrial, probe_trial

__all__ = [
    "D90",
    "HEAD_MODES",
    "LR_SCALINGS",
    "RESOLVED_IMAGES",
    "Baseline",
    "ProbeConfig",
    "ProbeResult",
    "ProbeTrial",
    "TargetResult",
    "default_probe_recipe",
    "expand_targets",
    "probe_trial",
    "run_probe",
    "theta_lr",
    "unresolved_gain",
]
