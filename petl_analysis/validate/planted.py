"""A planted answer: a task built from a backbone in which the unit that must change is known.

The teacher is the backbone plus a planted low-rank change in one chosen unit (a catalogue target: ``attn.v`` in
every block, or one block's ``blocks.2.mlp.fc1``) and a linear head; every image is relabelled with the teacher's
argmax. A student that starts from the backbone can only match the teacher by changing that unit (or by imitating
the change elsewhere, which is what a ranking must see through), so a ranking that predicts what is worth adapting
should put the planted unit first.

**The plant must not be something a head can express.** With the backbone's own linear-probe head (fitted on the
real labels), most of a planted change's effect on the logits is a linear function of the unplanted features
(measured: 96-99% of it), so retraining the head alone recovers much of the relabelling and "the unit that must
change" is not the unit. With ``invisible=True`` (default) the teacher's head is :func:`invisible_head`: the
planted features are regressed on the unplanted ones, ``f' = M f + m + ε``, and the head ``W M⁻¹`` (bias to
match) makes the teacher's logits exactly the unplanted logits plus ``W M⁻¹ ε``, a change uncorrelated over the
images with every ``A f + b``. A student that changes the planted unit (features ``f'``) and its head matches the
teacher exactly; a head-only fit has, in least squares, nothing to gain. :func:`head_only_check` measures that on
every plant (a linear probe on the unplanted features against the unplanted labels, McNemar), and the labels'
shift is measured against the unplanted model (backbone plus real-label head). Bias balancing (below) shifts a
head bias, which a head can express, so it is off with ``invisible=True``.

The change of one planted Linear unit ``y = W x + b`` (``W``: ``out x in``, a row slice for q/k/v) is::

    ΔW = c · U Vᵀ,   Δb = -ΔW μ          (so the change is ΔW (x - μ): centred, no constant shift)

with ``U`` (``out x rank``) and ``V`` (``in x rank``) orthonormal, ``μ`` the mean of the unit's inputs (tokens of
256 calibration images) and ``c`` chosen so that the change's RMS over those inputs is ``strength`` times the RMS
of the unit's own centred output, ``‖ΔW (X - μ)‖ = strength · ‖W (X - μ)‖`` (the same relative size in every unit
kind). The directions (``direction=``):

* ``"gradient"`` (default): the top ``rank`` singular pairs of the descent direction ``-∂L/∂W`` of the
  cross-entropy towards a random derangement of the calibration images' classes: the rank-``rank`` change that
  fine-tuning this unit towards *other* labels would start to make. A change of this kind is one gradient descent
  on that unit can find again.
* ``"random"``: ``U`` random, ``V`` orthonormalised ``Σ^½ G`` (``Σ`` the inputs' covariance): random directions
  weighted by how much the data excites them. Measured in ``docs/probe_validation.md``: a change of this kind that
  moves 26-40% of the labels is not learnable from ~1,000 labels by any unit (full fine-tuning gains 1-3 points over
  the linear probe), so it cannot test a ranking.

``strength`` is calibrated (bisection in log scale) so that a chosen share of labels differs from the unplanted
model's. A rank-1 change pushes many images towards the few classes at the ends of its direction; with
``balance=True`` (only with ``invisible=False``) the teacher's head bias is then shifted (:func:`balance_bias`) so
its class frequencies match the base dataset's. A bias is learnable by the head alone, so this adds nothing that
favours any unit: the probe's floor (the head trained alone) absorbs it (and, for the same reason, it is not part of
an invisible plant).

Images are stored at the model's input resolution and channels (:func:`at_model_resolution`): the teacher labels
exactly the pixels a student sees, whether the data is read in memory or from the folder written by
:func:`write_image_folder` (timm's eval transform is then an identity resize: checked in the tests).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..artefacts import Artefact
from ..constraints import Interval, Options, Unset, validate_params
from ..data import ImageDataset, SplitSpec, load_dataset, to_model_input, write_image_folder
from ..data.folder import class_folder_names
from ..engine import Recipe
from ..errors import PetlError
from ..linear_probe import fit_linear_probe
from ..models import ModelSpec, TensorSlice, Unit, model_input_config, resolve_targets
from ..task import DataSpec, build_task, prepare_model

__all__ = [
    "PlantedRecord",
    "PlantedTask",
    "PlantedUnit",
    "PlantedUnitStudy",
    "at_model_resolution",
    "balance_bias",
    "derangement",
    "gradient_directions",
    "head_only_check",
    "head_span_share",
    "invisible_head",
    "plant_unit",
    "planted_delta",
    "random_directions",
    "write_image_folder",
]

METADATA_FILE = "planted.json"
#: How the planted directions U, V are chosen (see :func:`plant_unit`).
DIRECTIONS = ("gradient", "random")
#: One-sided p-value under which a head-only fit is said to beat the unplanted labels (McNemar, validation images).
HEAD_CHECK_ALPHA = 0.05
#: Calibration images whose unit inputs define μ, Σ and the scale c (tokens of all of them are pooled).
CALIBRATION_IMAGES = 256


# ------------------------------------------------------------------------------------------------ pure maths


def psd_sqrt(cov: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a positive semi-definite matrix (negative rounding noise clipped to 0)."""
    evals, evecs = torch.linalg.eigh(cov.double())
    return (evecs * evals.clamp_min(0).sqrt()) @ evecs.T


def random_directions(
    cov: torch.Tensor, out_features: int, rank: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(U, V)``: ``U`` (out x rank) random orthonormal; ``V`` (in x rank) orthonormalised ``Σ^½ G``.

    Drawn in float64 from ``gen`` (U first, then G), so the same generator state gives the same directions.
    """
    _check_rank(rank, out_features, cov.shape[0])
    u = torch.linalg.qr(torch.randn(out_features, rank, generator=gen, dtype=torch.float64))[0]
    g = torch.randn(cov.shape[0], rank, generator=gen, dtype=torch.float64)
    v = torch.linalg.qr(psd_sqrt(cov) @ g)[0]
    return u, v


def gradient_directions(grad: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(U, V)``: the top ``rank`` singular pairs of ``-grad`` (out x in), the best rank-r descent direction.

    Signs follow ``-grad`` (``U_i · V_iᵀ`` has a positive inner product with it).
    """
    _check_rank(rank, *grad.shape)
    u, _, vh = torch.linalg.svd(-grad.double(), full_matrices=False)
    return u[:, :rank], vh[:rank].T


def head_span_residual(targets: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """``targets`` (N x C) minus their least-squares fit on ``[features, 1]`` (N x (F + 1)).

    What is left is uncorrelated, over these N rows, with every ``A f + b``: the part of a logit change that a new
    linear head on the same features cannot produce.
    """
    z = torch.cat([features.double(), torch.ones(len(features), 1, dtype=torch.float64)], 1)
    return targets.double() - z @ (torch.linalg.pinv(z) @ targets.double())


def invisible_head(
    weight: torch.Tensor,
    bias: torch.Tensor,
    features: torch.Tensor,
    planted_features: torch.Tensor,
    rtol: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """The teacher's head ``(W_T, b_T)`` that cancels every part of the plant a head-only fit could express.

    Regress the planted features on the unplanted ones over the images, ``f' = M f + m + ε`` (least squares, so
    ``ε`` is uncorrelated with ``[f, 1]``; in the coordinates of the affine subspace ``f`` spans, singular values
    below ``rtol`` of the largest left out), and set ``W_T = W M⁻¹``, ``b_T = b - W_T m``. Then exactly::

        W_T f' + b_T = (W f + b) + W M⁻¹ ε

    the unplanted logits plus a change that lies outside the span of ``[f, 1]`` over these images: the best
    least-squares fit of the teacher's logits by a new linear head on the unplanted features is the unplanted
    head itself. A student matches the teacher exactly by changing the planted unit (features ``f'``) and its head.

    ``weight`` (C x F), ``bias`` (C), ``features`` and ``planted_features`` (N x F). Returns ``(W_T, b_T, info)``:
    ``info`` has the head-span share of the raw logit change ``W (f' - f)`` (:func:`head_span_share`, what the
    plain teacher would have handed to a head) and of the teacher's (0 up to rounding), the residual's share of
    the feature change, the share of ``f' - f̄`` outside the span of the unplanted features (0: the identity holds),
    ``‖W_T‖ / ‖W‖`` and the largest deviation from the identity above (``identity_error``, float64 rounding).
    """
    f, fp, w = features.double(), planted_features.double(), weight.double()
    # Coordinates in the affine subspace the unplanted features span (a LayerNorm output loses one direction; both
    # f and f' lie in it), so that M is invertible: a = Eᵀ (f - f̄), a' = Eᵀ (f' - f̄), a' = M a + m + ε.
    fbar = f.mean(0)
    _, sv, vh = torch.linalg.svd(f - fbar, full_matrices=False)
    e = vh[sv > rtol * sv[0]].T
    a, ap = (f - fbar) @ e, (fp - fbar) @ e
    za = torch.cat([a, torch.ones(len(a), 1, dtype=torch.float64)], 1)
    coef = torch.linalg.lstsq(za, ap).solution
    m_mat, m_vec = coef[:-1].T, coef[-1]
    eps = ap - za @ coef
    m_inv = torch.linalg.inv(m_mat)
    w_t = w @ e @ m_inv @ e.T
    b_t = bias.double() + w @ fbar - w @ e @ m_inv @ (m_vec + e.T @ fbar)
    change = fp - f
    exact = (fp @ w_t.T + b_t) - (f @ w.T + bias.double() + eps @ (w @ e @ m_inv).T)
    info = {
        "raw_head_span_share": head_span_share(change @ w.T, f),
        "teacher_head_span_share": head_span_share(eps @ (w @ e @ m_inv).T, f),
        "residual_share_of_feature_change": float(eps.norm() / change.norm()) if float(change.norm()) else 0.0,
        "outside_feature_span": float((fp - fbar - ap @ e.T).norm() / (fp - fbar).norm()),
        "head_norm_ratio": float(w_t.norm() / w.norm()),
        "identity_error": float(exact.abs().max()),
    }
    return w_t, b_t, info


def head_span_share(logit_change: torch.Tensor, features: torch.Tensor) -> float:
    """Share (Frobenius) of a logit change (N x C) in the span of ``[features, 1]``: what a new linear head on
    those features reproduces exactly (least squares). 0 for a change a head-only fit cannot express."""
    d = logit_change.double()
    total = float(d.norm())
    return float((d - head_span_residual(d, features)).norm()) / total if total > 0 else 0.0


def _check_rank(rank: int, out_features: int, in_features: int) -> None:
    if not 1 <= rank <= min(out_features, in_features):
        raise PetlError(
            f"planted rank must be in [1, {min(out_features, in_features)}] for a "
            f"{out_features}x{in_features} unit; got {rank}"
        )


def unit_scale(direction: torch.Tensor, weight: torch.Tensor, centred_inputs: torch.Tensor) -> float:
    """``c`` with ``‖c · direction · Xcᵀ‖ = ‖weight · Xcᵀ‖``: strength 1 moves the output by its own RMS.

    ``direction`` and ``weight`` are ``(out, in)``; ``centred_inputs`` is ``(tokens, in)``.
    """
    xc = centred_inputs.double()
    own = float((xc @ weight.double().T).norm())
    moved = float((xc @ direction.double().T).norm())
    if moved <= 0:
        raise PetlError("the planted direction reads nothing of the unit's inputs (zero input variance?)")
    return own / moved


def balance_bias(logits: torch.Tensor, target_counts: torch.Tensor, iters: int = 400) -> torch.Tensor:
    """Per-class offset ``b`` so that the counts of ``argmax(logits + b)`` approach ``target_counts``.

    Multiplicative-weights style updates in log space (``b -= step · log(count / target)``) with a step that
    shrinks over the iterations; the best offset seen (smallest total absolute count error) is returned.
    """
    logits = logits.double()
    n, c = logits.shape
    target = target_counts.double() * (n / float(target_counts.sum()))
    b = torch.zeros(c, dtype=torch.float64)
    best, best_err = b.clone(), math.inf
    base_step = 0.05 * float(logits.std())
    for i in range(iters):
        counts = torch.bincount((logits + b).argmax(-1), minlength=c).double()
        err = float((counts - target).abs().sum())
        if err < best_err:
            best, best_err = b.clone(), err
        if err == 0:
            break
        b -= base_step / (1 + i / 50) * torch.log((counts + 1) / (target + 1))
    return best.to(torch.float32)


def planted_delta(
    units: list[Unit],
    params: dict[str, torch.Tensor],
    inputs: dict[str, torch.Tensor],
    directions: dict[str, tuple[torch.Tensor, torch.Tensor]],
    strength: float,
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The dense change of every planted parameter, and each unit's scale ``strength · c``.

    Each unit gets ``ΔW = strength · c · U Vᵀ`` with ``(U, V) = directions[unit.name]`` and ``c`` from
    :func:`unit_scale`, and ``Δb = -ΔW μ`` when it has a bias (``μ``: mean of ``inputs[unit.module]``, the unit's
    input activations ``(tokens, in)`` on the calibration images).

    Returns ``(delta, scales)``: ``delta`` maps a parameter name to a float64 tensor of the parameter's full shape
    (zero outside the planted rows), ``scales`` a unit name to the factor in front of its ``U Vᵀ``.
    """
    delta: dict[str, torch.Tensor] = {}
    scales: dict[str, float] = {}
    for u in units:
        x = inputs[u.module].double()
        mu = x.mean(0)
        uu, vv = directions[u.name]
        direction = uu @ vv.T
        scales[u.name] = strength * unit_scale(direction, _view(params[u.weight.param], u.weight), x - mu)
        dw = scales[u.name] * direction
        _add(delta, params, u.weight, dw)
        bias = next((b for b in u.biases if b.shape == (u.out_features,)), None)
        if bias is not None:  # centre the change; a unit without a bias keeps the constant part
            _add(delta, params, bias, -(dw @ mu))
    return delta, scales


def _view(full: torch.Tensor, t: TensorSlice) -> torch.Tensor:
    return full if t.rows is None else full[t.rows[0] : t.rows[1]]


def _add(delta: dict[str, torch.Tensor], params: dict[str, torch.Tensor], t: TensorSlice, value: torch.Tensor) -> None:
    full = delta.setdefault(t.param, torch.zeros_like(params[t.param], dtype=torch.float64))
    _view(full, t).add_(value)


# ------------------------------------------------------------------------------------------------ data


def at_model_resolution(ds: ImageDataset, model: nn.Module) -> ImageDataset:
    """``ds`` converted to the model's channels and size and rounded back to ``uint8`` (same labels and classes).

    The conversion is :func:`~petl_analysis.data.to_model_input`'s (bilinear, antialiased; BT.601 luma), so for the
    result the model's input conversion is the identity and every reader (in memory, streamed folder) gives the
    model the same pixels.
    """
    cfg = model_input_config(model)
    x = to_model_input(ds, cfg["img_size"], cfg["in_chans"], mean=(0.0,), std=(1.0,)).tensors[0]
    images = (x * 255.0).round_().clamp_(0, 255).to(torch.uint8)
    return ImageDataset(images, ds.labels.clone(), list(ds.classes), ds.name)


# ------------------------------------------------------------------------------------------------ the task


@dataclass
class PlantedUnit:
    """One planted unit: its relative output change (``strength``), scale ``c`` and ``‖ΔW‖ / ‖W‖``."""

    unit: str
    scale: float
    weight_change: float  # Frobenius ‖ΔW‖ / ‖W‖ of the unit's weight (slice)
    relative_rms: float = math.nan  # ‖ΔW (X - μ)‖ / ‖W (X - μ)‖ over the calibration inputs


@dataclass
class PlantedTask:
    """A relabelled dataset whose labels come from the backbone plus a planted change in ``target``.

    Attributes:
        dataset: images at the model's resolution (uint8), labels = the teacher's argmax.
        base: the same images with the original labels.
        target: the planted catalogue spec (e.g. ``attn.v`` or ``blocks.2.mlp.fc1``); ``units`` its units.
        rank, strength, seed: the change (module docstring); ``calibrated``: strength found for ``share_target``.
        share_changed: share of images whose teacher label differs from the unplanted model's (head fitted on the
            real labels, no balancing); ``share_changed_unbalanced``: the same before the bias balancing.
        teacher_agreement: share of teacher labels equal to the original labels; ``base_agreement``: the same for
            the unplanted model (how good the teacher's starting point is).
        class_counts: images per class under the teacher's labels; ``base_class_counts``: under the original.
        head_fit: validation and test accuracy of the linear-probe head on the real labels (base split).
        invisible: the teacher's head is :func:`invisible_head`'s; ``invisibility``: its diagnostics (at the final
            strength); ``head_check``: :func:`head_only_check` on the planted labels.
        delta: the dense change per parameter (name -> tensor); ``teacher``: the planted model.
    """

    dataset: ImageDataset
    base: ImageDataset
    model: ModelSpec
    target: str
    units: list[str]
    rank: int
    direction: str
    strength: float
    seed: int
    calibrated: bool
    share_target: float | None
    share_changed: float
    share_changed_unbalanced: float
    teacher_agreement: float
    base_agreement: float
    class_counts: list[int]
    base_class_counts: list[int]
    balanced: bool
    head_fit: dict[str, float]
    planted: list[PlantedUnit]
    calibration: list[dict[str, float]] = field(default_factory=list)
    invisible: bool = False
    invisibility: dict[str, Any] = field(default_factory=dict)
    head_check: dict[str, Any] = field(default_factory=dict)
    delta: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    teacher: nn.Module | None = field(default=None, repr=False)

    def metadata(self) -> PlantedRecord:
        """Everything but tensors and the model (written as ``planted.json`` beside the images)."""
        return PlantedRecord(
            base_dataset=self.base.name,
            model=self.model,
            target=self.target,
            units=list(self.units),
            rank=self.rank,
            direction=self.direction,
            strength=self.strength,
            seed=self.seed,
            calibrated=self.calibrated,
            share_target=self.share_target,
            share_changed=self.share_changed,
            share_changed_unbalanced=self.share_changed_unbalanced,
            teacher_agreement_with_original=self.teacher_agreement,
            base_agreement_with_original=self.base_agreement,
            class_counts=self.class_counts,
            base_class_counts=self.base_class_counts,
            balanced=self.balanced,
            n_images=len(self.dataset),
            head_fit=self.head_fit,
            planted=list(self.planted),
            calibration=self.calibration,
            invisible=self.invisible,
            invisibility=self.invisibility,
            head_check=self.head_check,
            classes=list(self.dataset.classes),
            class_folders=class_folder_names(self.dataset.classes),
        )

    def write(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """The relabelled dataset as an image folder with ``planted.json`` (:func:`write_image_folder`)."""
        return write_image_folder(
            self.dataset, path, metadata=self.metadata(), metadata_file=METADATA_FILE, overwrite=overwrite
        )


def _invisible_fields_v1(body: dict[str, Any]) -> dict[str, Any]:
    """Version 1 planted with the real-label head (no invisibility, no head-only check)."""
    return {**body, "invisible": False, "invisibility": {}, "head_check": {}}


@dataclass
class PlantedRecord(Artefact):
    """The metadata of a planted task (:meth:`PlantedTask.metadata`): ``planted.json`` of its image folder, and each
    plant of the planted-unit study (:class:`PlantedUnitStudy`). The fields are :class:`PlantedTask`'s, with
    ``n_images``, and the folder's ``classes`` and ``class_folders`` (None in records written without a folder)."""

    SCHEMA: ClassVar[str] = "planted_task"
    VERSION: ClassVar[int] = 2
    MIGRATIONS: ClassVar[dict[int, Any]] = {1: _invisible_fields_v1}

    base_dataset: str
    model: ModelSpec
    target: str
    units: list[str]
    rank: int
    direction: str
    strength: float
    seed: int
    calibrated: bool
    share_target: float | None
    share_changed: float
    share_changed_unbalanced: float
    teacher_agreement_with_original: float
    base_agreement_with_original: float
    class_counts: list[int]
    base_class_counts: list[int]
    balanced: bool
    n_images: int
    head_fit: dict[str, float]
    planted: list[PlantedUnit]
    calibration: list[dict[str, float]] = field(default_factory=list)
    invisible: bool = False
    invisibility: dict[str, Any] = field(default_factory=dict)
    head_check: dict[str, Any] = field(default_factory=dict)
    classes: list[str] | None = None
    class_folders: list[str] | None = None


@dataclass
class PlantedUnitStudy(Artefact):
    """The planted-unit study's document (``scripts/validate_planted_unit.py``): its ``design``, fixed before any
    plant is built, and one row per finished plant (its :class:`PlantedRecord` under ``"plant"``, the
    learnability verdict, the selectors' tie classes). Files written before it had a header read as version 1."""

    SCHEMA: ClassVar[str] = "planted_unit_study"
    VERSION: ClassVar[int] = 1

    design: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def read_header(cls, data: dict[str, Any]) -> tuple[Any, Any, Any, dict[str, Any]]:
        if "schema" not in data and "design" in data:  # the committed study of issue 25, written without one
            return cls.SCHEMA, 1, None, dict(data)
        return super().read_header(data)

    def plants(self) -> list[PlantedRecord]:
        """Each finished row's plant record (migrated to this version)."""
        return [
            PlantedRecord.from_dict(r["plant"], source=f"{r['planted']} seed {r['plant_seed']}") for r in self.rows
        ]


def default_head_recipe() -> Recipe:
    """The teacher's linear probe on the real labels (logistic regression on frozen features)."""
    return Recipe(epochs=30, batch_size=64, lr=1e-2, weight_decay=0.0, warmup_epochs=1.0)


def _unit_inputs(model: nn.Module, modules: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Input activations of each module on ``x``, tokens pooled: ``module -> (N · tokens, in_features)``."""
    found: dict[str, list[torch.Tensor]] = {m: [] for m in modules}
    named = dict(model.named_modules())
    hooks = [
        named[m].register_forward_hook(lambda mod, inp, out, m=m: found[m].append(inp[0].detach())) for m in modules
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return {m: torch.cat(v).reshape(-1, v[0].shape[-1]) for m, v in found.items()}


def _unit_gradients(model: nn.Module, units: list[Unit], x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradient of the mean cross-entropy towards labels ``y`` with respect to each unit's weight (slice)."""
    model.zero_grad(set_to_none=True)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    model.requires_grad_(True)
    try:
        nn.functional.cross_entropy(model(x), y).backward()
        named = dict(model.named_parameters())
        return {u.name: _view(named[u.weight.param].grad, u.weight).detach().clone() for u in units}
    finally:
        model.zero_grad(set_to_none=True)
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])


def derangement(n: int, gen: torch.Generator) -> torch.Tensor:
    """A random permutation of ``range(n)`` with no fixed point (rejection sampling; ~e tries on average)."""
    while True:
        perm = torch.randperm(n, generator=gen)
        if n < 2 or bool((perm != torch.arange(n)).all()):
            return perm


@torch.no_grad()
def _pre_logits(model: nn.Module, x: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    return torch.cat(
        [
            model.forward_head(model.forward_features(x[i : i + batch]), pre_logits=True)
            for i in range(0, len(x), batch)
        ]
    )


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    return torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])


_PLANT_CONSTRAINTS: dict[str, list[Any]] = {
    "rank": [Interval(Integral, 1, None, closed="left")],
    "strength": [Interval(Real, 0, None, closed="neither"), Unset("calibrated to the share")],
    "share": [Interval(Real, 0, 1, closed="neither")],
    "direction": [Options(str, DIRECTIONS)],
    "seed": [Interval(Integral, 0, None, closed="left")],
}


def plant_unit(
    model_spec: ModelSpec | str,
    dataset: str | ImageDataset,
    target: str,
    *,
    rank: int = 8,
    strength: float | None = None,
    share: float = 0.5,
    direction: str = "gradient",
    seed: int = 0,
    invisible: bool = True,
    balance: bool | None = None,
    head_recipe: Recipe | None = None,
    split: SplitSpec | None = None,
    tolerance: float = 0.02,
    max_steps: int = 24,
) -> PlantedTask:
    """Build the planted task (module docstring): backbone + low-rank change in ``target`` + a head that leaves a
    head-only fit nothing to gain (``invisible=True``) or the real-label linear-probe head (``invisible=False``).

    Args:
        model_spec: the backbone (``ModelSpec`` or a model name); built with a head for the dataset's classes.
        dataset: a built-in name, an image folder path, or an :class:`ImageDataset` (e.g. a subset).
        target: catalogue spec of the planted unit(s); Linear units only (``attn.v``, ``blocks.2.attn.q``, ...).
        rank: rank of the change in each unit.
        strength: the change's RMS relative to the unit's own centred output RMS; ``None`` calibrates it so that
            ``share`` of the labels change (within ``tolerance``, at most ``max_steps`` bisection steps).
        direction: ``"gradient"`` (default: the top singular directions of the descent direction towards permuted
            labels, :func:`gradient_directions`) or ``"random"`` (:func:`random_directions`; see the module
            docstring for why that one is not learnable from a few thousand labels).
        seed: model head initialisation, the head's training and the planted directions.
        invisible: the teacher's head from :func:`invisible_head` (module docstring); ``head_check`` on the result
            says whether a head-only fit nevertheless beats the unplanted labels.
        balance: shift the teacher's head bias so its class counts match the original labels' (default: only when
            not ``invisible``; a bias shift is head-expressible, so ``invisible=True`` refuses it).
        head_recipe: recipe of the teacher's linear probe (default :func:`default_head_recipe`), trained on the
            ``split`` (default ``SplitSpec()``) train part of the real labels and selected on its val part.

    Returns:
        A :class:`PlantedTask`; its ``dataset`` is what a student is trained on (e.g. via :meth:`PlantedTask.write`).
    """
    validate_params(
        "plant_unit",
        {"rank": rank, "strength": strength, "share": share, "direction": direction, "seed": seed},
        _PLANT_CONSTRAINTS,
    )
    balance = _balance_mode(balance, invisible)
    spec = ModelSpec(name=model_spec) if isinstance(model_spec, str) else model_spec
    split, head_recipe = split or SplitSpec(), head_recipe or default_head_recipe()
    b = _backbone(spec, dataset, target, seed, split, head_recipe)
    labels, calib = b.base.labels[b.calib_idx], b.x[b.calib_idx]
    directions = _directions(b.model, b.units, calib, labels, b.base.num_classes, b.inputs, rank, direction, b.gen)
    teachers = _Teachers(b.model, b.units, b.inputs, directions, b.x, invisible, balance, b.base, b.y_base)
    if strength is not None:
        s_final, (changed, built) = strength, teachers.share_at(strength)
    else:
        s_final, changed, built = _calibrate(teachers.share_at, share, tolerance, max_steps)
    chosen = dict(rank=rank, direction=direction, strength=float(s_final), seed=seed, calibrated=strength is None)
    chosen.update(share_target=share if strength is None else None, share_changed=changed, balanced=balance)
    return _planted_task(b, teachers, built, spec, target, chosen, invisible, split, head_recipe)


def _balance_mode(balance: bool | None, invisible: bool) -> bool:
    """Whether to balance the teacher's classes (default: only when the head is not invisible); a bias shift is
    head-expressible, so an invisible head refuses it."""
    if balance is None:
        return not invisible
    if balance and invisible:
        raise PetlError(
            "balance=True shifts the teacher's head bias, a change a head-only fit can make: it cannot "
            "be combined with invisible=True"
        )
    return balance


@dataclass
class _Backbone:
    """The unplanted model with its real-label head and what planting reads of it."""

    model: nn.Module
    base: ImageDataset  # the images at the model's resolution, original labels
    units: list[Unit]
    fit: Any  # the head's linear-probe fit
    x: torch.Tensor  # model input of every image
    y_base: torch.Tensor  # the unplanted model's labels
    gen: torch.Generator
    calib_idx: torch.Tensor
    inputs: dict[str, torch.Tensor]  # the planted modules' inputs on the calibration images


def _backbone(
    spec: ModelSpec, dataset: str | ImageDataset, target: str, seed: int, split: SplitSpec, head_recipe: Recipe
) -> _Backbone:
    """Build the model, fit its head on the real labels, and read its labels and the units' calibration inputs."""
    raw = load_dataset(dataset) if isinstance(dataset, str) else dataset
    model = prepare_model(spec, raw.num_classes, seed=seed)
    base = at_model_resolution(raw, model)
    units = resolve_targets(model, target)
    not_linear = [u.name for u in units if not u.is_linear]
    if not_linear:
        raise PetlError(f"target {target!r}: planting needs Linear units; {not_linear[0]} is a LayerNorm")
    task = build_task(DataSpec(base.name, split), model, dataset=base)
    fit = fit_linear_probe(model, task, head_recipe, seed=seed)
    model.eval().requires_grad_(False)
    cfg = model_input_config(model)
    x = to_model_input(base, cfg["img_size"], cfg["in_chans"], cfg["mean"], cfg["std"]).tensors[0]
    y_base = _predict(model, x).argmax(-1)
    gen = torch.Generator().manual_seed(int(seed) + 1)
    calib_idx = torch.randperm(len(x), generator=gen)[:CALIBRATION_IMAGES]
    inputs = _unit_inputs(model, sorted({u.module for u in units}), x[calib_idx])
    return _Backbone(model, base, units, fit, x, y_base, gen, calib_idx, inputs)


def _planted_task(
    b: _Backbone,
    teachers: _Teachers,
    built: tuple,
    spec: ModelSpec,
    target: str,
    chosen: dict[str, Any],
    invisible: bool,
    split: SplitSpec,
    head_recipe: Recipe,
) -> PlantedTask:
    """The task of the chosen teacher ``built``: the relabelled images, the planted units' sizes and the checks."""
    teacher, delta, scales, y, y_raw = built
    base, params = b.base, teachers.params
    labels = y.to(torch.int64)
    relabelled = ImageDataset(base.images, labels, list(base.classes), f"planted:{target}@{base.name}")
    planted = [
        PlantedUnit(
            u.name, scales[u.name], _relative_change(u, delta, params), _relative_rms(u, delta, params, b.inputs)
        )
        for u in b.units
    ]
    head_check = head_only_check(b.model, relabelled, b.y_base, split, head_recipe, seed=chosen["seed"])
    return PlantedTask(
        dataset=relabelled,
        base=base,
        model=spec,
        target=target,
        units=[u.name for u in b.units],
        **chosen,
        share_changed_unbalanced=float((y_raw != b.y_base).float().mean()),
        teacher_agreement=float((labels == base.labels).float().mean()),
        base_agreement=float((b.y_base == base.labels).float().mean()),
        class_counts=torch.bincount(labels, minlength=base.num_classes).tolist(),
        base_class_counts=teachers.target_counts.tolist(),
        head_fit={"val_acc": float(b.fit.val_acc), "test_acc": float(b.fit.test_acc)},
        planted=planted,
        calibration=teachers.history,
        invisible=invisible,
        invisibility=teachers.invisibility,
        head_check=head_check,
        delta={k: v.float() for k, v in delta.items()},
        teacher=teacher,
    )


def _directions(
    model: nn.Module,
    units: list[Unit],
    x: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    inputs: dict[str, torch.Tensor],
    rank: int,
    direction: str,
    gen: torch.Generator,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The planted directions of each unit: towards a derangement of the labels of the calibration images ``x``
    (``gradient``), or random in the span of the unit's inputs (``random``)."""
    if direction == "gradient":
        perm = derangement(num_classes, gen)
        grads = _unit_gradients(model, units, x, perm[labels])
        return {u.name: gradient_directions(grads[u.name], rank) for u in units}
    directions = {}
    for u in units:
        xu = inputs[u.module].double()
        xc = xu - xu.mean(0)
        directions[u.name] = random_directions(xc.T @ xc / max(1, len(xc) - 1), u.out_features, rank, gen)
    return directions


class _Teachers:
    """The teacher of each strength: the backbone plus the planted change, its head chosen invisible (or the
    unplanted one), bias-balanced when asked; :meth:`share_at` records each strength tried in ``history``."""

    def __init__(
        self,
        model: nn.Module,
        units: list[Unit],
        inputs: dict[str, torch.Tensor],
        directions: dict[str, Any],
        x: torch.Tensor,
        invisible: bool,
        balance: bool,
        base: ImageDataset,
        y_base: torch.Tensor,
    ) -> None:
        self.model, self.units, self.inputs, self.directions, self.x = model, units, inputs, directions, x
        self.invisible, self.balance, self.y_base = invisible, balance, y_base
        self.params = {n: p.detach() for n, p in model.named_parameters()}
        self.target_counts = torch.bincount(base.labels, minlength=base.num_classes)
        self.head0 = model.get_classifier()
        self.feats0 = _pre_logits(model, x)
        self.invisibility: dict[str, Any] = {}
        self.history: list[dict[str, float]] = []

    def planted_model(self, s: float):
        delta, scales = planted_delta(self.units, self.params, self.inputs, self.directions, s)
        teacher = copy.deepcopy(self.model)
        tparams = dict(teacher.named_parameters())
        with torch.no_grad():
            for name, d in delta.items():
                tparams[name].add_(d.to(tparams[name].dtype))
        return teacher, delta, scales

    def at(self, s: float) -> tuple[nn.Module, dict[str, torch.Tensor], dict[str, float], torch.Tensor, torch.Tensor]:
        """``(teacher, delta, scales, labels, labels before balancing)`` at strength ``s``."""
        teacher, delta, scales = self.planted_model(s)
        head0, x = self.head0, self.x
        if self.invisible:
            w, b, info = invisible_head(
                head0.weight.detach(), head0.bias.detach(), self.feats0, _pre_logits(teacher, x)
            )
            with torch.no_grad():
                teacher.get_classifier().weight.copy_(w.to(head0.weight.dtype))
                teacher.get_classifier().bias.copy_(b.to(head0.bias.dtype))
            self.invisibility.clear()
            self.invisibility.update(info)
        logits = _predict(teacher, x)
        y_raw = logits.argmax(-1)
        if self.balance:
            offset = balance_bias(logits, self.target_counts)
            with torch.no_grad():
                teacher.get_classifier().bias.add_(offset)
            logits = logits + offset
        return teacher, delta, scales, logits.argmax(-1), y_raw

    def share_at(self, s: float):
        """``(share of labels changed, at(s))``."""
        out = self.at(s)
        changed = float((out[3] != self.y_base).float().mean())
        self.history.append({"strength": s, "share_changed": changed})
        return changed, out


def _relative_rms(u: Unit, delta, params, inputs) -> float:
    """``‖ΔW (X - μ)‖ / ‖W (X - μ)‖`` over the calibration inputs: the change's size relative to the unit's output."""
    x = inputs[u.module].double()
    return unit_scale(_view(params[u.weight.param], u.weight), _view(delta[u.weight.param], u.weight), x - x.mean(0))


def head_only_check(
    backbone: nn.Module,
    planted: ImageDataset,
    unplanted_labels: torch.Tensor,
    split: SplitSpec,
    recipe: Recipe,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Can a new head on the *unplanted* backbone's features do better than the unplanted labels themselves?

    A linear probe is fitted on ``planted``'s ``split`` train part (its labels: the teacher's) and scored on its val
    part, against the unplanted model's labels (``unplanted_labels``, what the backbone with its real-label head
    says) on the same images. A plant the head can express shows up as a head accuracy above the unplanted
    labels'. McNemar's exact one-sided test on the validation images: ``b`` images only the head gets right,
    ``c`` only the unplanted labels; ``p = P(Binomial(b + c, 1/2) >= b)``. ``head_beats_unplanted``: ``p <``
    :data:`HEAD_CHECK_ALPHA`.
    """
    from scipy import stats

    from ..data import make_splits

    model = copy.deepcopy(backbone)
    val_idx = torch.as_tensor(make_splits(planted, split).indices["val"])
    task = build_task(DataSpec(planted.name, split), model, dataset=planted)
    fit = fit_linear_probe(model, task, recipe, seed=seed)
    model.eval()
    pred = _predict(model, task.val.tensors[0]).argmax(-1)
    y = task.val.tensors[1]
    base = unplanted_labels[val_idx]
    if not torch.equal(planted.labels[val_idx], y):
        raise RuntimeError("validation indices and the task's validation labels disagree")  # a split-code change
    head_right, base_right = pred == y, base == y
    b, c = int((head_right & ~base_right).sum()), int((~head_right & base_right).sum())
    p = float(stats.binomtest(b, b + c, 0.5, alternative="greater").pvalue) if b + c else 1.0
    n = len(y)
    return {
        "n_val": n,
        "head_only_val": float(head_right.float().mean()),
        "unplanted_val": float(base_right.float().mean()),
        "gain_images": int(head_right.sum()) - int(base_right.sum()),
        "mcnemar_b": b,
        "mcnemar_c": c,
        "p_one_sided": p,
        "head_beats_unplanted": p < HEAD_CHECK_ALPHA,
        "fit_val_acc": float(fit.val_acc),
    }


def _relative_change(u: Unit, delta, params) -> float:
    dw = _view(delta[u.weight.param], u.weight)
    return float(dw.norm() / _view(params[u.weight.param], u.weight).double().norm())


def _calibrate(share_at, share: float, tolerance: float, max_steps: int):
    """Bisection of log(strength) for ``share_at(strength)[0] ≈ share``; returns (strength, share, built)."""
    lo, hi = 0.0, 1.0
    best = None
    for _ in range(8):  # bracket: double until the share is reached
        changed, built = share_at(hi)
        best = _closer(best, (hi, changed, built), share)
        if changed >= share:
            break
        lo, hi = hi, hi * 2
    else:
        raise PetlError(
            f"even strength {hi / 2:g} changes only {changed:.0%} of the labels (< {share:.0%}); "
            "pass a larger rank or a smaller share"
        )
    for _ in range(max_steps):
        if abs(best[1] - share) <= tolerance:
            break
        mid = math.sqrt(lo * hi) if lo > 0 else hi / 2
        changed, built = share_at(mid)
        best = _closer(best, (mid, changed, built), share)
        lo, hi = (mid, hi) if changed < share else (lo, mid)
    return best


def _closer(best, cand, share: float):
    return cand if best is None or abs(cand[1] - share) < abs(best[1] - share) else best
