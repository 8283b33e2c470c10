"""The ``Plan`` artefact: which units to adapt, with which method and hyper-parameters, at what exact cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..accounting import ParamCount
from ..artefacts import Artefact
from ..errors import PetlError
from ..models import ModelSpec, resolve_targets
from ..tuners import MethodConfig, config_from_dict, get_method


@dataclass
class PlannedTarget:
    """A ranked target set the plan adapts, and why."""

    target: str
    units: list[str]
    rank: int
    d90: float | None
    reason: str


@dataclass
class Plan(Artefact):
    """Output of the plan stage (one file per budget).

    Attributes:
        model: the model the plan is for (checked when applied).
        num_classes: the head size the counts assume.
        budget: the trainable-parameter budget; ``head_in_budget`` says whether the head counts against it.
        method, config: the adaptation method and its full config (``targets`` are concrete unit names).
        targets: the chosen target sets, in ranking order, with the reason each was chosen.
        trainable: itemised expected trainable parameters (equal to the count after injection).
        used: trainable parameters counted against the budget, and ``used_fraction`` of the budget.
    """

    SCHEMA = "plan"
    VERSION = 1

    model: ModelSpec
    num_classes: int
    budget: int
    head_in_budget: bool
    method: str
    config: dict[str, Any]
    targets: list[PlannedTarget]
    trainable: dict[str, int]
    used: int
    used_fraction: float
    policy: str = "greedy"
    selector: str = ""
    ranking_source: str = ""
    notes: list[str] = field(default_factory=list)

    def method_config(self) -> MethodConfig:
        return config_from_dict(self.config)

    def summary(self) -> dict[str, Any]:
        cfg = self.config
        hp = ", ".join(f"{k}={cfg[k]}" for k in ("n", "rank", "r", "alpha", "sharing", "scale") if k in cfg)
        return {
            "budget": self.budget,
            "method": self.method,
            "targets": ", ".join(t.target for t in self.targets),
            "units": sum(len(t.units) for t in self.targets),
            "hyper-parameters": hp,
            "adapter": self.trainable["adapter"],
            "shared": self.trainable["shared"],
            "head": self.trainable["head"],
            "bias_norm": self.trainable["bias_norm"],
            "total_incl_head": self.trainable["total_incl_head"],
            "used": self.used,
            "used %": round(100 * self.used_fraction, 1),
        }


def validate_plan(plan: Plan, model: nn.Module, model_spec: ModelSpec | None = None, source: str = "plan") -> ParamCount:
    """Check ``plan`` against ``model`` (before injection): same architecture, targets exist, the method accepts
    them (n divides every dimension, ...), and the count recomputes to the stored value. Returns the count."""
    if model_spec is not None and model_spec.name != plan.model.name:
        raise PetlError(f"{source}: made for model {plan.model.name!r}, not {model_spec.name!r}")
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if getattr(head, "out_features", plan.num_classes) != plan.num_classes:
        raise PetlError(f"{source}: made for a {plan.num_classes}-class head, the dataset has {head.out_features} classes")
    config = plan.method_config()
    resolve_targets(model, config.targets) if getattr(config, "targets", None) else None
    count = get_method(config).expected_count(model)
    if count.as_dict() != {k: int(v) for k, v in plan.trainable.items()}:
        raise PetlError(
            f"{source}: stored trainable count {plan.trainable.get('total_incl_head')} does not match the "
            f"{count.total} this model gives (edited plan, or another model?)"
        )
    return count


def export_peft(plan: Plan, model: nn.Module) -> tuple[dict[str, Any], list[str]]:
    """The equivalent peft config (as a dict for ``peft.get_peft_config``) and notes on what does not map."""
    cfg = plan.config
    units = resolve_targets(model, cfg["targets"])
    notes: list[str] = []
    sliced = [u.name for u in units if u.rows is not None]
    if sliced:
        notes.append(
            f"{len(sliced)} target(s) are row slices of a fused qkv (e.g. {sliced[0]}); peft can only target the whole "
            "`attn.qkv` Linear, so they are exported as that module (a superset)"
        )
    modules = sorted({u.module for u in units})
    if plan.method == "lora":
        out = {"peft_type": "LORA", "r": cfg["r"], "lora_alpha": cfg.get("alpha", cfg["r"]),
               "lora_dropout": cfg.get("dropout", 0.0), "target_modules": modules, "rank_pattern": {},
               "modules_to_save": ["head"] if cfg.get("train_head", True) else []}
    elif plan.method == "kadaptation":
        out = {"peft_type": "LOKR", "r": cfg["rank"], "alpha": cfg["rank"], "target_modules": modules,
               "decompose_both": False, "decompose_factor": cfg["n"],
               "modules_to_save": ["head"] if cfg.get("train_head", True) else []}
        if cfg["n"] > 1 or cfg.get("sharing", "none") != "none":
            notes.append(
                "LoKr is a single Kronecker term with unshared factors; KAdaptation's sum of n terms with rule "
                f"matrices shared across layers (n={cfg['n']}, sharing={cfg.get('sharing')}) has no peft equivalent: "
                "the export keeps targets and rank only"
            )
    else:
        raise PetlError(f"no peft export for method {plan.method!r}; exportable: kadaptation, lora")
    return out, notes
