"""Injection of KAdaptation into a timm ViT: one :class:`KronDelta` per targeted unit, rules shared per group."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from torch import nn

from ...errors import PetlError
from ...functional.kron import common_divisors
from ...models.catalogue import Unit
from ..base import PLANNED, Added, Method, register_method, shared_or_adapter
from ..deltas import attach_delta
from .config import KAdaptationConfig
from .layer import BiasShift, KronDelta, KronRules


def _key(unit: Unit) -> str:
    return unit.kind.replace(".", "_")


def valid_ns(units: Sequence[Unit]) -> list[int]:
    """Every Kronecker size ``n`` KAdaptation accepts on ``units``: the common divisors of the ``d_out`` and ``d_in``
    of every Linear unit, ascending (``[]`` without one). The one definition: the method checks against it and the
    planner chooses from it (:func:`planned_ns`)."""
    dims = [d for u in units if u.is_linear for d in (u.in_features, u.out_features)]
    return common_divisors(*dims) if dims else []


def planned_ns(units: Sequence[Unit]) -> list[int]:
    """The valid ``n`` a planner should try: ``n >= 2`` with the rule matrix no larger than the fast factor (``n <=
    d/n`` for the smallest ``d``), so both Kronecker factors carry information (``n = d`` would leave each layer only
    scalars); ``[1]`` when there is none."""
    dims = [d for u in units if u.is_linear for d in (u.in_features, u.out_features)]
    return [n for n in valid_ns(units) if n >= 2 and n * n <= min(dims)] or [1]


@register_method(
    display_name="KAdaptation", short_name="KA", marker="*", sizing=PLANNED, peft_type="LOKR", peft_approximate=True
)
class KAdaptation(Method):
    """KAdaptation as a weight parametrisation (see :class:`KAdaptationConfig` for the maths and options).

    Applied to the weight tensor itself, so it works where timm reads ``qkv.weight`` directly (BEiT, EVA), merges
    exactly, and never mixes samples of a batch (unlike the official code's delta reshape).
    """

    config_class = KAdaptationConfig
    config: KAdaptationConfig

    def _group(self, unit: Unit) -> str:
        return {"type": unit.kind, "global": "all", "none": unit.name}[self.config.sharing]

    def _bias_groups(self, units: list[Unit]) -> dict[tuple[int, int], list[Unit]]:
        groups: dict[tuple[int, int], list[Unit]] = defaultdict(list)
        for u in units:
            groups[(u.block, u.out_features)].append(u)
        return groups

    def _check(self, model: nn.Module, units: list[Unit]) -> None:
        n = self.config.n
        for u in units:
            if not u.is_linear:
                raise PetlError(f"kadaptation targets linear weights; {u.name} is a {u.kind} (norm) unit")
        valid = valid_ns(units)
        if units and n not in valid:
            bad = next(u for u in units if u.out_features % n or u.in_features % n)
            raise PetlError(
                f"kadaptation n={n} does not divide the {bad.out_features}x{bad.in_features} weight of "
                f"{bad.name}; valid n for these targets: {', '.join(map(str, valid))}"
            )
        if self.config.bias:
            for u in units:
                if not u.biases or any(t.numel != u.out_features for t in u.biases):
                    raise PetlError(
                        f"kadaptation bias=true needs every target to own a bias of its output width; {u.name} has "
                        f"{'none' if not u.biases else 'biases held apart (' + ', '.join(t.param for t in u.biases) + ')'}"
                        "; use bias=false or target its q/v slices"
                    )

    def _inject(self, model: nn.Module, units: list[Unit]) -> None:
        cfg = self.config
        rules: dict[str, KronRules] = {}
        for u in units:
            group = self._group(u)
            if group not in rules:
                rules[group] = KronRules(cfg.n, cfg.a_factorised, cfg.init)
            delta = KronDelta(rules[group], u.out_features, u.in_features, cfg.rank, cfg.scale, cfg.dropout, cfg.init)
            attach_delta(model, u.weight.param, f"kadaptation_{_key(u)}", delta, [u.weight.rows])
        if cfg.bias:
            for (_block, width), group_units in self._bias_groups(units).items():
                shift = BiasShift(width)
                rows_by_param: dict[str, list] = defaultdict(list)
                for u in group_units:
                    for t in u.biases:
                        rows_by_param[t.param].append(t.rows)
                for i, (param, rows) in enumerate(rows_by_param.items()):
                    attach_delta(model, param, f"kadaptation_bias{width}", shift, rows, borrowed=i > 0)

    def _added(self, model: nn.Module, units: list[Unit]) -> Added:
        cfg = self.config
        added = Added()
        added.adapter = sum(cfg.rank * (u.out_features + u.in_features) for u in units)
        per_set = 2 * cfg.n**2 if cfg.a_factorised else cfg.n**3
        references: dict[str, int] = defaultdict(int)
        for u in units:
            references[self._group(u)] += 1
        for refs in references.values():
            adapter, shared = shared_or_adapter(per_set, refs)
            added.adapter += adapter
            added.shared += shared
        if cfg.bias:
            added.adapter += sum(width for (_, width) in self._bias_groups(units))
        return added
