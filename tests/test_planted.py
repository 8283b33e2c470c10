"""The intrinsic-dimension probe recovers a planted k (small, fast version of scripts/validate_planted.py).

A frozen random network depends on its planted Linear (32×32, D = 1,024) only through k = 8 linear functions of the
weight; random Fastfood subspaces with seeds unrelated to the planting must reach the teacher from d ≈ k on, and a
same-shaped Linear that cannot express the change must not reach the target even at d = D.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from petl_analysis.engine import Recipe

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "validate_planted.py"
K = 8


@pytest.fixture(scope="module")
def planted():
    spec = importlib.util.spec_from_file_location("validate_planted", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("validate_planted", module)
    spec.loader.exec_module(module)
    return module


pytestmark = pytest.mark.usefixtures("one_thread")  # module-wide: the module-scoped fixtures train


@pytest.fixture(scope="module")
def task(planted, one_thread):
    return planted.build_task(K, q=4, m=32, n_train=2000, n_val=500, n_test=1000, seed=0)


def test_structure_function_sees_only_k_numbers(planted, task):
    # Moving fc.weight along the D - k invisible directions leaves the logits unchanged (float32 rounding only) ...
    assert planted.invariance_check(task) < 1e-3
    # ... and a generic random subspace sees min(d, k) of the k relevant numbers: the teacher is reachable iff d >= k.
    for d in (K - 1, K, 2 * K):
        o = planted.oracle(task, "fastfood", d, seed=11)
        assert o["rank"] == min(d, K)
        assert (o["residual"] < 1e-6) == (d >= K)


def test_d90_recovers_planted_k_and_control_never_reaches(planted, task):
    recipe = Recipe(epochs=12, batch_size=64, lr=0.3, weight_decay=0.0, warmup_epochs=1.0)
    direct = Recipe(epochs=12, batch_size=64, lr=1e-2, weight_decay=0.0, warmup_epochs=1.0)
    ft = planted.train_direct(task, [planted.PLANTED], direct)["val_acc"]
    assert ft > 0.95  # the ceiling: direct training of the planted Linear finds the teacher
    target = 0.9 * ft
    seeds = (11, 12)  # the planted change uses no projection, so no seed is special; d90 of the seed-mean curve
    curve = [
        planted.train_subspace(task, planted.PLANTED, d, s, recipe, "fastfood")
        for d in (4, 6, 8, 10, 12, 16)
        for s in seeds
    ]
    est = planted.d90_of(curve, target, n_boot=0)
    accs = {d: round(a, 3) for d, a in est["mean"].items()}
    assert est["reached"] and not est["below_min"], accs
    assert K / 1.5 <= est["d90"] <= 1.5 * K, (est["d90"], accs)
    assert accs[6] < 0.7 * target, accs  # below k a partial match is worth little: the curve jumps near k

    control = [planted.train_subspace(task, planted.CONTROL, d, 11, recipe, "fastfood") for d in (8 * K, 1024)]
    est_c = planted.d90_of(control, target, n_boot=0)
    assert not est_c["reached"], [r["val_acc"] for r in control]
    assert max(r["val_acc"] for r in control) < 0.5 * target
