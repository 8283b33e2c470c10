"""The select stage driver: a probe (or a model + data) in, a :class:`Ranking` out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..engine import Recipe
from ..errors import PetlError
from ..linear_probe import fit_linear_probe
from ..models import DEFAULT_PROBE_TARGETS, ModelSpec
from ..probe import ProbeResult, expand_targets
from ..task import DataSpec, build_task
from .ranking import Ranking, rank_correlations
from .selectors import PROBE_SELECTORS, SELECTORS, rank_by_proxy, rank_from_probe

if TYPE_CHECKING:
    from ..study import Study


def run_select(
    probe: ProbeResult | None = None,
    proxies: Sequence[str] = (),
    *,
    model: ModelSpec | None = None,
    data: DataSpec | None = None,
    device: str = "cpu",
    **options: Any,
) -> Ranking:
    """Rank target sets (:func:`rank_targets` on a :class:`~petl_analysis.study.Study` of the probe's model and data,
    or of ``model`` and ``data`` without a probe); ``options``: those of :func:`rank_targets`."""
    from ..study import Study

    _check_select(probe, proxies)
    model = probe.model if probe is not None else model
    data = probe.data if probe is not None else data
    if model is None or data is None:
        raise PetlError("a model and a dataset are needed to compute proxies without a probe result")
    return rank_targets(Study(model, data, device=device), probe, proxies, **options)


def _check_select(probe: ProbeResult | None, proxies: Sequence[str]) -> None:
    for name in proxies:
        if name in PROBE_SELECTORS and probe is not None:
            continue  # d90+acc beside d90: read from the same probe
        SELECTORS.get(name)  # unknown names fail before any work
    if probe is None and not proxies:
        raise PetlError(f"without a probe result, name at least one proxy selector ({', '.join(SELECTORS.names())})")


def rank_targets(
    study: Study,
    probe: ProbeResult | None = None,
    proxies: Sequence[str] = (),
    *,
    targets: Sequence[str] | None = None,
    per_block: bool = False,
    n_batches: int = 5,
    seed: int = 0,
    source: str = "",
) -> Ranking:
    """The select stage on ``study``.

    With a ``probe``, the ranking is by d90 and each proxy in ``proxies`` is computed on the same sets and stored in
    ``details["proxies"]`` with its Spearman/Kendall correlation to the d90 ranking. Without a probe (``--from-model``),
    the first proxy is the ranking and the others are compared with it.
    """
    _check_select(probe, proxies)
    rankings: dict[str, Ranking] = {}
    from_probe = [n for n in proxies if probe is not None and n in PROBE_SELECTORS]
    proxies = [n for n in proxies if n not in from_probe]
    if proxies:
        sets = {t.target: t.units for t in probe.targets} if probe is not None else None
        rankings = proxy_rankings(
            proxies,
            study.model,
            study.data,
            sets,
            targets=targets,
            per_block=per_block,
            n_batches=n_batches,
            seed=seed,
            device=study.device,
            study=study,
        )
    if probe is not None:
        primary = rank_from_probe(probe, source=source)
        compared = {**{n: PROBE_SELECTORS.get(n)(probe, source=source) for n in from_probe if n != "d90"}, **rankings}
    else:
        first = next(iter(proxies))
        primary = rankings[first]
        compared = {k: v for k, v in rankings.items() if k != first}
    primary.details["proxies"] = {
        name: {"order": r.order(), "scores": {e.target: e.score for e in r.entries}, **rank_correlations(primary, r)}
        for name, r in compared.items()
    }
    if compared and (why := correlation_caveat(primary)) is not None:
        primary.details["proxies_caveat"] = why
        for corr in primary.details["proxies"].values():
            corr["spearman"] = corr["kendall"] = float("nan")
    return primary


def correlation_caveat(ranking: Ranking) -> str | None:
    """Why rank correlations with ``ranking`` would say nothing (None when they can): fewer than 3 targets, or a d90
    ranking in which no target reached the threshold (its order is only the tie-break, best validation accuracy)."""
    if len(ranking.entries) < 3:
        return (
            f"no rank correlation: the ranking has {len(ranking.entries)} target(s), and a rank correlation needs "
            "at least 3"
        )
    if ranking.selector.startswith("d90") and not any(e.reached for e in ranking.entries):
        return (
            "no rank correlation with d90: no target reached the d90 threshold, so the d90 ranking has no order "
            "(it follows best validation accuracy only); probe larger d (--max-d) or check the probe's gain"
        )
    return None


def proxy_rankings(
    proxies: Sequence[str],
    model: ModelSpec,
    data: DataSpec,
    sets: dict[str, list[str]] | None = None,
    *,
    targets: Sequence[str] | None = None,
    per_block: bool = False,
    n_batches: int = 5,
    seed: int = 0,
    device: str = "cpu",
    study: Study | None = None,
) -> dict[str, Ranking]:
    """Rank ``sets`` (label -> unit names; default: ``targets`` expanded on the model) with each proxy selector.

    The model gets the dataset's head, fitted as a linear probe first: gradients through a random head say little,
    and the probe's subspace training starts from the same head. ``study``: the study of ``model`` and ``data``
    whose dataset is read (default: a new one)."""
    from ..study import Study

    for name in proxies:
        SELECTORS.get(name)
    study = study or Study(model, data, device=device)
    net = study.build_model(seed)
    task = build_task(data, net, dataset=study.dataset)
    # The proxies read the head only: the test split is never scored here.
    fit_linear_probe(
        net, task, Recipe(epochs=30, lr=1e-2, weight_decay=0.0), seed=seed, device=device, score_test=False
    )
    if sets is None:
        sets = expand_targets(net, list(targets or DEFAULT_PROBE_TARGETS), per_block)
    return {
        name: rank_by_proxy(name, net, task, sets, model_spec=model, data=data, n_batches=n_batches, seed=seed)
        for name in proxies
    }
