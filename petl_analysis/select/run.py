"""The select stage driver: a probe (or a model + data) in, a :class:`Ranking` out."""

from __future__ import annotations

from typing import Sequence

from ..data import open_dataset
from ..engine import Recipe
from ..errors import PetlError
from ..models import DEFAULT_PROBE_TARGETS, ModelSpec
from ..probe import ProbeResult, expand_targets
from ..task import DataSpec, build_task, fit_linear_probe, prepare_model
from .ranking import Ranking, rank_correlations
from .selectors import SELECTORS, rank_by_proxy, rank_from_probe


def run_select(
    probe: ProbeResult | None = None,
    proxies: Sequence[str] = (),
    *,
    model: ModelSpec | None = None,
    data: DataSpec | None = None,
    targets: Sequence[str] | None = None,
    per_block: bool = False,
    n_batches: int = 5,
    seed: int = 0,
    device: str = "cpu",
    source: str = "",
) -> Ranking:
    """Rank target sets.

    With a ``probe``, the ranking is by d90 and each proxy in ``proxies`` is computed on the same sets and stored in
    ``details["proxies"]`` with its Spearman/Kendall correlation to the d90 ranking. Without a probe (``--from-model``),
    the first proxy is the ranking and the others are compared with it.
    """
    for name in proxies:
        SELECTORS.get(name)  # unknown names fail before any work
    if probe is None and not proxies:
        raise PetlError("without a probe result, name at least one proxy selector (rgn, fisher, kappa, random)")
    model = probe.model if probe is not None else model
    data = probe.data if probe is not None else data
    if model is None or data is None:
        raise PetlError("a model and a dataset are needed to compute proxies without a probe result")
    rankings: dict[str, Ranking] = {}
    if proxies:
        ds = open_dataset(data.dataset, skip_bad_images=data.skip_bad_images)
        net = prepare_model(model, ds.num_classes, seed=seed)
        task = build_task(data, net, dataset=ds)
        # Gradients through a random head say little; proxies see the linear-probe head, as the probe does.
        fit_linear_probe(net, task, Recipe(epochs=30, lr=1e-2, weight_decay=0.0), seed=seed, device=device)
        if probe is not None:
            sets = {t.target: t.units for t in probe.targets}
        else:
            sets = expand_targets(net, list(targets or DEFAULT_PROBE_TARGETS), per_block)
        for name in proxies:
            rankings[name] = rank_by_proxy(name, net, task, sets, model_spec=model, data=data, n_batches=n_batches,
                                           seed=seed)
    if probe is not None:
        primary = rank_from_probe(probe, source=source)
        compared = rankings
    else:
        first = list(proxies)[0]
        primary = rankings[first]
        compared = {k: v for k, v in rankings.items() if k != first}
    primary.details["proxies"] = {
        name: {"order": r.order(), "scores": {e.target: e.score for e in r.entries}, **rank_correlations(primary, r)}
        for name, r in compared.items()
    }
    return primary
