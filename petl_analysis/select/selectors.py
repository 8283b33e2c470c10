"""Selectors: the intrinsic-dimension ranking, and cheap proxies computed from a few batches.

All selectors rank the same target sets (the probe's, or catalogue specs) so they can be compared:

- ``d90``: gain-normalised d90 ascending (a set that reaches the threshold with a smaller subspace adapts more
  cheaply). It declares its ties: sets that never reach the bar form one tie class at the end, sets with exactly
  equal d90s one class (their strict order, which a planner follows, is by label). Overlapping CIs are flagged.
- ``d90+acc``: d90 with the best-validation-accuracy tie-break (the unreached sets, and equal d90s, ordered by the
  accuracy of their d = D training): a strict order, a selector of its own that costs the probe's trainings.
- ``rgn``: relative gradient norm ||g|| / ||theta|| (surgical fine-tuning's Auto-RGN), descending.
- ``fisher``: mean squared gradient per parameter (empirical Fisher diagonal, as SPT / FISH masks), descending.
- ``kappa``: weight condition number sigma_max / sigma_min (peft's KappaTune: well-conditioned = safer), ascending.
- ``gps``: per output row, the largest accumulated gradient magnitudes (GPS, Zhang et al., CVPR 2024), descending.
- ``spt``: share of the set's parameters among the most sensitive ones (SPT, He et al., ICCV 2023), descending.
- ``apla``: the "attention projection only" rule (APLA, 2025): ``attn.proj`` sets first, no data needed; the rule
  names only its first sets, so it declares the rest one tie class.
- ``constant``: the sets in their listing order (the catalogue's, as the probe lists them): a data-free baseline.
- ``random``: a seeded random order (the control).

A proxy whose scores are exactly equal declares those sets tied (:attr:`RankedTarget.group`); agreement statistics
read the tie classes, planners the strict order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..constraints import Options, validate_params
from ..engine import num_examples, take
from ..errors import PetlError
from ..models import ModelSpec, resolve_targets
from ..probe import ProbeResult
from ..registry import Registry
from ..task import DataSpec, Task
from .ranking import RankedTarget, Ranking

#: Proxy selectors: ``fn(model, task, sets, n_batches, seed) -> {label: score}`` plus a direction.
SELECTORS: Registry[tuple[Callable[..., dict[str, float]], str]] = Registry("selector")
#: Selectors read from a probe result (``fn(probe, source=...) -> Ranking``); they cost the probe's trainings.
PROBE_SELECTORS: Registry[Callable[..., Ranking]] = Registry("probe selector")


def declare_ties(entries: list[RankedTarget], key: Callable[[RankedTarget], object]) -> None:
    """Mark runs of consecutive entries (in rank order) with equal ``key`` as one tie class: ``group`` = the rank of
    the class's first entry (so it never collides with an untied entry's rank); untied entries keep ``group`` 0."""
    ranked = sorted(entries, key=lambda e: e.rank)
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and key(ranked[j + 1]) == key(ranked[i]):
            j += 1
        if j > i:
            for e in ranked[i : j + 1]:
                e.group = ranked[i].rank
        i = j + 1


#: How :func:`rank_from_probe` orders equal d90s: declared tie classes (``d90``) or validation accuracy
#: (``d90+acc``).
TIE_BREAKS = ("declared", "accuracy")


def rank_from_probe(
    probe: ProbeResult, *, classic: bool = False, source: str = "", tie_break: str = "declared"
) -> Ranking:
    """Rank the probe's targets by d90 (gain-normalised by default), flagging statistically tied neighbours.

    ``tie_break="declared"`` (the ``d90`` selector): equal d90s and the sets that never reached the bar are declared
    tie classes, ordered by label inside (no accuracy leaks into the order); ``"accuracy"`` (``d90+acc``): the probe
    table's order, equal d90s and unreached sets by best validation accuracy, no declared tie."""
    validate_params("rank_from_probe", {"tie_break": tie_break}, {"tie_break": [Options(str, TIE_BREAKS)]})

    def d90_of(t):
        return t.d90_classic if classic else t.d90

    if tie_break == "accuracy":
        targets = probe.ranked(classic=classic)  # the one d90 order: the probe table's too
    else:
        targets = sorted(
            probe.targets, key=lambda t: (d90_of(t).reached_value is None, d90_of(t).reached_value or 0.0, t.target)
        )
    entries = []
    for i, t in enumerate(targets):
        d = d90_of(t)
        entries.append(
            RankedTarget(
                target=t.target,
                units=t.units,
                D=t.D,
                rank=i + 1,
                score=d.value if d.reached else None,
                d90=d.value if d.reached else None,
                d90_ci=[d.ci_low, d.ci_high],
                reached=bool(d.reached),
                below_min=bool(d.reached and d.below_min),
                n_seeds=d.n_seeds,
            )
        )
    _flag_ties(entries)
    if tie_break == "declared":
        declare_ties(entries, lambda e: (e.reached, e.d90))
    # Validation accuracies only: a ranking must not change when the test labels do.
    details: dict[str, object] = {
        "threshold": probe.config.threshold,
        "baselines_val": {k: v.val_mean for k, v in probe.baselines.items()},
        "n_measured": sum(e.reached for e in entries),
    }
    why = probe.unresolved_gain()
    if why:
        details["warning"] = (
            f"{why}: the gain-normalised threshold sits inside the noise, so the d90s do not "
            "order the targets (the ranking follows best validation accuracy and noise); the linear "
            "probe may be all this task needs"
        )
    name = ("d90-classic" if classic else "d90") + ("+acc" if tie_break == "accuracy" else "")
    return Ranking(
        selector=name,
        model=probe.model,
        data=probe.data,
        entries=entries,
        source=source,
        direction="ascending",
        details=details,
    )


@PROBE_SELECTORS.register("d90")
def d90_ranking(probe: ProbeResult, *, source: str = "") -> Ranking:
    """d90 with its ties declared (the unreached sets, equal d90s)."""
    return rank_from_probe(probe, source=source)


@PROBE_SELECTORS.register("d90+acc")
def d90_accuracy_ranking(probe: ProbeResult, *, source: str = "") -> Ranking:
    """d90 with the best-validation-accuracy tie-break (a strict order)."""
    return rank_from_probe(probe, source=source, tie_break="accuracy")


@PROBE_SELECTORS.register("direct")
def direct_ranking(probe: ProbeResult, *, source: str = "") -> Ranking:
    """Each set trained alone with all its weights (its d = D point: plain training of the set under the probe's
    short recipe), ranked by that seed-mean validation accuracy, highest first: a low-fidelity oracle.

    Its cost is those trainings only (one per set and seed run), not the rest of the probe. Sets within
    :data:`~petl_analysis.probe.result.RESOLVED_IMAGES` validation images of the first set of their class are
    declared tied (one image is rounding). The lean search (``ProbeConfig.search="lean"``) trains every set at
    d = D first; the adaptive search reaches d = D only for sets that need it, and this selector then names the
    sets without the point."""
    from ..probe.result import RESOLVED_IMAGES, images_apart

    missing = [t.target for t in probe.targets if t.D not in t.dims]
    if missing:
        raise PetlError(
            f"selector 'direct' reads each set's d = D training; the probe has none for {', '.join(missing)} "
            "(probe with --search lean, which trains every set at d = D first)"
        )
    accuracy = {}
    for t in probe.targets:
        row = [v for v in t.val_per_seed[t.dims.index(t.D)] if math.isfinite(v)]
        accuracy[t.target] = float(np.mean(row)) if row else -math.inf
    order = sorted(probe.targets, key=lambda t: (-accuracy[t.target], t.target))
    entries = [
        RankedTarget(target=t.target, units=t.units, D=t.D, rank=i + 1, score=accuracy[t.target])
        for i, t in enumerate(order)
    ]
    # a tie class holds the sets within RESOLVED_IMAGES of its first (best) set
    head = entries[0] if entries else None
    for e in entries:
        if images_apart(head.score, e.score, probe.n_val) >= RESOLVED_IMAGES:
            head = e
        e.group = head.rank
    sizes = {g: sum(e.group == g for e in entries) for g in {e.group for e in entries}}
    for e in entries:
        if sizes[e.group] == 1:
            e.group = 0  # untied entries keep group 0 (declare_ties' convention)
    return Ranking(
        selector="direct",
        model=probe.model,
        data=probe.data,
        entries=entries,
        source=source,
        direction="descending",
        details={"n_val": probe.n_val, "tie_images": RESOLVED_IMAGES},
    )


def _interval(e: RankedTarget) -> tuple[float, float]:
    lo, hi = (e.d90_ci + [None, None])[:2]
    lo = e.d90 if lo is None else lo
    hi = math.inf if hi is None or not e.reached else hi
    return (lo if lo is not None else math.inf), hi


def _flag_ties(entries: list[RankedTarget]) -> None:
    for a in entries:
        lo_a, hi_a = _interval(a)
        a.tied_with = [
            b.target for b in entries if b is not a and max(lo_a, _interval(b)[0]) <= min(hi_a, _interval(b)[1])
        ]


def rank_by_proxy(
    name: str,
    model: nn.Module,
    task: Task | None,
    sets: dict[str, list[str]],
    *,
    model_spec: ModelSpec,
    data: DataSpec | None = None,
    n_batches: int = 5,
    batch_size: int = 32,
    seed: int = 0,
) -> Ranking:
    """Rank ``sets`` (label -> unit names) with a registered proxy selector."""
    fn, direction = SELECTORS.get(name)
    start = time.perf_counter()
    scores = fn(model, task, sets, n_batches=n_batches, batch_size=batch_size, seed=seed)
    compute_s = time.perf_counter() - start
    sign = 1.0 if direction == "ascending" else -1.0
    order = sorted(sets, key=lambda label: (sign * scores[label], label))
    units_of = {label: resolve_targets(model, names) for label, names in sets.items()}
    entries = [
        RankedTarget(
            target=label,
            units=sets[label],
            D=sum(u.numel for u in units_of[label]),
            rank=i + 1,
            score=float(scores[label]),
        )
        for i, label in enumerate(order)
    ]
    first = entries[0].score if entries else None
    names_first = getattr(fn, "names_first_only", False)
    # Equal scores are a tie; a rule that names only its first sets leaves the rest one class.
    declare_ties(entries, (lambda e: e.score == first) if names_first else (lambda e: e.score))
    return Ranking(
        selector=name,
        model=model_spec,
        data=data,
        entries=entries,
        direction=direction,
        details={"n_batches": n_batches, "batch_size": batch_size, "seed": seed, "compute_s": compute_s},
    )


def _tensor_view(params: dict[str, torch.Tensor], t) -> torch.Tensor:
    full = params[t.param]
    return full if t.rows is None else full[t.rows[0] : t.rows[1]]


def _gradients(
    model: nn.Module, task: Task, n_batches: int, batch_size: int, seed: int
) -> list[dict[str, torch.Tensor]]:
    """Per-batch gradients of every parameter (model in eval mode, all parameters temporarily trainable)."""
    if task is None:
        raise PetlError("this selector needs data (gradients); give a dataset")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(num_examples(task.train), generator=gen)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    model.eval().requires_grad_(True)
    grads = []
    try:
        for b in range(n_batches):
            idx = order[(b * batch_size) % len(order) :][:batch_size]
            if len(idx) == 0:
                break
            model.zero_grad(set_to_none=True)
            x, y = take(task.train, idx)  # in memory: plain indexing; streamed: these images decoded
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})
    finally:
        model.zero_grad(set_to_none=True)
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
    return grads


def _set_tensors(model: nn.Module, names: Sequence[str]):
    return [t for u in resolve_targets(model, list(names)) for t in u.tensors]


def _register(name: str, direction: str, *, names_first_only: bool = False):
    """Register a proxy; ``names_first_only``: the rule names only the sets it puts first (score equal to the best),
    so the others are declared one tie class."""

    def deco(fn):
        fn.names_first_only = names_first_only
        SELECTORS.register(name)((fn, direction))
        return fn

    return deco


@_register("rgn", "descending")
def relative_gradient_norm(model, task, sets, *, n_batches, batch_size, seed) -> dict[str, float]:
    grads = _gradients(model, task, n_batches, batch_size, seed)
    params = dict(model.named_parameters())
    mean_grad = {n: torch.stack([g[n] for g in grads]).mean(0) for n in grads[0]}
    out = {}
    for label, names in sets.items():
        g2 = sum(float(_tensor_view(mean_grad, t).pow(2).sum()) for t in _set_tensors(model, names))
        w2 = sum(float(_tensor_view(params, t).detach().pow(2).sum()) for t in _set_tensors(model, names))
        out[label] = math.sqrt(g2) / max(math.sqrt(w2), 1e-12)
    return out


@_register("fisher", "descending")
def fisher_diagonal(model, task, sets, *, n_batches, batch_size, seed) -> dict[str, float]:
    grads = _gradients(model, task, n_batches, batch_size, seed)
    out = {}
    for label, names in sets.items():
        tensors = _set_tensors(model, names)
        total = sum(float(torch.stack([_tensor_view(g, t) for g in grads]).pow(2).mean(0).sum()) for t in tensors)
        out[label] = total / max(1, sum(t.numel for t in tensors))  # per parameter: big sets are not favoured
    return out


@_register("kappa", "ascending")
def condition_number(model, task, sets, *, n_batches, batch_size, seed) -> dict[str, float]:
    params = dict(model.named_parameters())
    out = {}
    for label, names in sets.items():
        logs = []
        for u in resolve_targets(model, list(names)):
            if not u.is_linear:
                continue
            s = torch.linalg.svdvals(_tensor_view(params, u.weight).detach().float())
            logs.append(math.log(float(s.max()) / max(float(s.min()), 1e-12)))
        out[label] = math.exp(float(np.mean(logs))) if logs else math.inf  # norms have no condition number
    return out


@_register("random", "ascending")
def random_order(model, task, sets, *, n_batches, batch_size, seed) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {label: float(v) for label, v in zip(sets, rng.permutation(len(sets)))}


def _row_view(t, g: torch.Tensor) -> torch.Tensor:
    """A tensor as (output rows, inputs): a weight as is, a bias or norm vector as one input per row."""
    return g.reshape(g.shape[0], -1) if g.ndim >= 2 else g.reshape(-1, 1)


@_register("gps", "descending")
def gradient_parameter_selection(
    model, task, sets, *, n_batches, batch_size, seed, top_k: int = 1
) -> dict[str, float]:
    """GPS-style score (Zhang et al., "Gradient-based Parameter Selection for Efficient Fine-Tuning", CVPR 2024).

    GPS keeps, for every output neuron (row) of every weight, the ``top_k`` parameters with the largest gradient
    magnitude accumulated over the data, and tunes those. As a score of a target set: the mean over its rows of
    those ``top_k`` magnitudes (|g| summed over ``n_batches`` batches of the cross-entropy loss; GPS itself uses a
    supervised-contrastive loss), so a set whose neurons each have some strongly driven input ranks first. Only the
    weights of Linear units count (GPS selects in weight matrices).
    """
    grads = _gradients(model, task, n_batches, batch_size, seed)
    total = {n: torch.stack([g[n].abs() for g in grads]).sum(0) for n in grads[0]}
    out = {}
    for label, names in sets.items():
        row_scores = []
        for u in resolve_targets(model, list(names)):
            if not u.is_linear:
                continue
            rows = _row_view(u.weight, _tensor_view(total, u.weight))
            row_scores.append(rows.topk(min(top_k, rows.shape[1]), dim=1).values.mean(1))
        out[label] = float(torch.cat(row_scores).mean()) if row_scores else 0.0
    return out


@_register("spt", "descending")
def sensitivity_density(
    model, task, sets, *, n_batches, batch_size, seed, fraction: float = 0.004
) -> dict[str, float]:
    """SPT-style sensitivity (He et al., "Sensitivity-Aware Visual Parameter-Efficient Fine-Tuning", ICCV 2023).

    SPT scores each parameter by the first-order loss reduction of tuning it, which for a gradient step is the
    squared gradient, takes the top ``fraction`` of all candidate parameters (0.4% in the paper's figures) as the
    sensitive ones, and adapts the weight matrices that hold many of them. As a score of a target set: the share
    of its parameters that fall in that global top ``fraction`` (of the parameters of all sets ranked together).
    """
    grads = _gradients(model, task, n_batches, batch_size, seed)
    fisher = {n: torch.stack([g[n] for g in grads]).pow(2).mean(0) for n in grads[0]}
    per_set = {
        label: torch.cat([_tensor_view(fisher, t).reshape(-1) for t in _set_tensors(model, names)])
        for label, names in sets.items()
    }
    everything = torch.cat(list(per_set.values()))
    k = max(1, int(round(fraction * everything.numel())))
    cut = everything.topk(k).values.min()
    return {label: float((v >= cut).float().mean()) for label, v in per_set.items()}


@_register("constant", "ascending")
def constant_order(model, task, sets, *, n_batches, batch_size, seed) -> dict[str, float]:
    """The sets in the order they are listed (the catalogue's order, as the probe lists them): a data-free constant
    baseline, the same order on every dataset. Any selector worth its cost should beat it."""
    return {label: float(i) for i, label in enumerate(sets)}


@_register("apla", "ascending", names_first_only=True)
def attention_projection_rule(model, task, sets, *, n_batches, batch_size, seed) -> dict[str, float]:
    """The APLA rule (2025, "Attention Projection Layer Adaptation"): adapt the attention output projection
    (``attn.proj``) and nothing else. As a ranking: sets made only of ``attn.proj`` units first (score 0), sets
    that contain some second (the share of their units that are not ``attn.proj``), the rest last (score 1).
    No data is needed."""
    out = {}
    for label, names in sets.items():
        units = resolve_targets(model, list(names))
        out[label] = sum(u.kind != "attn.proj" for u in units) / max(1, len(units))
    return out


def _linear_units(model: nn.Module, names: Sequence[str]):
    return [u for u in resolve_targets(model, list(names)) if u.is_linear]


@_register("gid", "ascending")
def gradient_intrinsic_dimensionality(model, task, sets, *, n_batches, batch_size, seed) -> dict[str, float]:
    """Gradient intrinsic dimensionality (GID), after "Gradient Intrinsic Dimensionality Alignment: Closing the Gap
    between LoRA and Full Fine-Tuning" (RaLoRA; ICLR 2026, openreview.net/forum?id=kObvnQ6pUx), which estimates how
    many update directions a layer's full fine-tuning gradient really uses by the entropy of its singular values.

    Per Linear unit: the gradient of its weight (or row slice) summed over ``n_batches`` batches, its singular values
    ``s``, ``p = s / sum(s)`` and the effective rank ``exp(-sum p log p)``. A set's score is the sum over its units
    (d90 counts a set's directions together). Ascending: a set whose gradient lives in fewer directions should need a
    smaller subspace, the claim the validation stage tests. The paper allocates LoRA ranks with it; using it to order
    sets is this tool's reading."""
    grads = _gradients(model, task, n_batches, batch_size, seed)
    total = {n: torch.stack([g[n] for g in grads]).sum(0) for n in grads[0]}
    out = {}
    for label, names in sets.items():
        score = 0.0
        for u in _linear_units(model, names):
            score += effective_rank(_tensor_view(total, u.weight))
        out[label] = score
    return out


def effective_rank(matrix: torch.Tensor) -> float:
    """Entropy effective rank ``exp(-sum p log p)`` of a matrix, ``p = s / sum(s)`` over its singular values ``s``
    (Roy and Vetterli 2007): 1 for a rank-one matrix, ``n`` for ``n`` equal singular values; 0 for a zero matrix."""
    s = torch.linalg.svdvals(matrix.detach().double())
    s = s[s > 0]
    if s.numel() == 0:
        return 0.0
    p = s / s.sum()
    return float(torch.exp(-(p * p.log()).sum()))


@_register("page", "descending")
def projected_adapter_gradient_energy(
    model, task, sets, *, n_batches, batch_size, seed, rank: int = 8
) -> dict[str, float]:
    """Projected adapter gradient energy (PAGE), after the DomLoRA paper (arXiv 2605.06183, 2026): the initial
    gradient energy a LoRA adapter on a unit could train.

    At LoRA's initialisation (``B = 0``, ``A`` random) only ``B`` receives a gradient, ``dL/dB = G A^T`` with ``G`` the
    weight's gradient, so the energy available to the adapter is ``||G A^T||_F^2``. Per Linear unit: ``A`` of rank
    ``rank`` drawn as peft initialises it (uniform in ``+-1/sqrt(in_features)``, seeded), the energy averaged over
    ``n_batches`` batches; a set's score is the sum over its units. Descending: more energy to train first."""
    grads = _gradients(model, task, n_batches, batch_size, seed)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for label, names in sets.items():
        energy = 0.0
        for u in _linear_units(model, names):
            bound = 1.0 / math.sqrt(u.in_features)
            a = (torch.rand(rank, u.in_features, generator=gen, dtype=torch.float64) * 2 - 1) * bound
            per_batch = [float((_tensor_view(g, u.weight).double() @ a.T).pow(2).sum()) for g in grads]
            energy += float(np.mean(per_batch))
        out[label] = energy
    return out


@_register("residual", "descending")
def normalised_residual_norm(model, task, sets, *, n_batches, batch_size, seed) -> dict[str, float]:
    """A normalised residual-norm score in the style of the Layer Card (arXiv 2602.04019, 2026; its abstract names a
    normalised residual norm, activation energy and inter-layer coupling per layer): how much a unit moves what it
    reads, with no gradient.

    Per Linear unit: ``||x W^T|| / ||x||`` over the tokens of ``n_batches`` batches (``W`` its weight or row slice,
    ``x`` the inputs of its module, captured by a forward hook; no bias), averaged over tokens; a set's score is
    the mean over its units. Descending (fixed before any result was seen): a unit that changes its input more is
    read as the one whose adaptation changes the function more. The Layer Card's own definitions are not public
    beyond the abstract, so this is a reading of the idea, not a reimplementation."""
    if task is None:
        raise PetlError("this selector needs data (activations); give a dataset")
    units = {label: _linear_units(model, names) for label, names in sets.items()}
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    ratios: dict[str, list[float]] = {u.name: [] for us in units.values() for u in us}
    by_module: dict[str, list] = {}
    for us in units.values():
        for u in us:
            by_module.setdefault(u.module, []).append(u)

    def hook_for(module_name: str):
        def hook(_module, inputs, _output):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).double()
            x_norm = x.norm(dim=1).clamp_min(1e-12)
            for u in by_module[module_name]:
                w = _tensor_view(params, u.weight).detach().double()
                ratios[u.name].append(float(((x @ w.T).norm(dim=1) / x_norm).mean()))

        return hook

    handles = [modules[m].register_forward_hook(hook_for(m)) for m in by_module]
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(num_examples(task.train), generator=gen)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for b in range(n_batches):
                idx = order[(b * batch_size) % len(order) :][:batch_size]
                if len(idx) == 0:
                    break
                x, _ = take(task.train, idx)
                model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {label: float(np.mean([np.mean(ratios[u.name]) for u in us])) if us else 0.0 for label, us in units.items()}
