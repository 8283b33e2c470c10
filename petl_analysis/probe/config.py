"""What a probe measures and how: :class:`ProbeConfig` and the learning-rate rule of theta_d."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, ClassVar

from ..constraints import Interval, ListOf, Options, Satisfies, Unset, validate_fields
from ..engine import Recipe
from ..errors import PetlError, expected_one_of
from ..models import DEFAULT_PROBE_TARGETS

HEAD_MODES = ("train", "frozen")
LR_SCALINGS = ("sqrt", "constant")
#: ``adaptive``: every target's curve on a coarse grid, refined between bracketing points (the d90 of each set);
#: ``lean``: a race that spends trials only where the order of the sets is not yet settled (:meth:`_Search.race`).
SEARCHES = ("adaptive", "lean")

_SPEC = Satisfies(lambda t: isinstance(t, str) and bool(t.strip()), "a non-empty str")
_AT_LEAST_ONE = Interval(Integral, 1, None, closed="left")
_POSITIVE = Interval(Real, 0, None, closed="neither")


def default_probe_recipe() -> Recipe:
    """Short trainings: every (target, d, seed) costs one of these. ``head_lr`` is the classifier's rate; ``lr`` is
    theta_d's only with ``ProbeConfig.lr_scaling="constant"`` (see :func:`theta_lr`). A fixed schedule
    (``epoch_selection="last"``): the floor, ceiling and curve points are the last epoch's validation accuracy, not a
    maximum over epochs of the images they report."""
    return Recipe(
        epochs=10, batch_size=64, lr=1e-2, head_lr=1e-2, weight_decay=0.0, warmup_epochs=1.0, epoch_selection="last"
    )


def theta_lr(base: float, d: int, scaling: str) -> float:
    """Learning rate of theta_d at dimension d.

    Adam moves every coordinate of theta_d by about ``lr`` per step, so with (near-)orthogonal unit-norm projection
    columns one step moves the weights by about ``lr * sqrt(d)`` in norm: a fixed ``lr`` takes ever longer steps in
    weight space as d grows. ``"sqrt"`` keeps that length fixed: ``lr = base / sqrt(d)`` (``base`` is the step
    length, ``ProbeConfig.theta_step``); ``"constant"`` uses ``base`` at every d (Li et al. 2018).
    """
    if scaling not in LR_SCALINGS:
        raise expected_one_of("lr scaling", scaling, LR_SCALINGS)
    if scaling == "constant":
        return float(base)
    return float(base) / math.sqrt(d)


@dataclass
class ProbeConfig:
    """What to probe and how (recorded in the result).

    Every decision of the probe (the refinement of the d grid, d90, the learning rate chosen for each d, the order
    of targets that never reach the threshold) reads validation accuracy. Test accuracy is computed once per trial
    and reported beside it; nothing reads it.

    Attributes:
        targets: catalogue specs, each probed as one subspace set S.
        per_block: expand each target into one set per block (``attn.v`` -> ``blocks.0.attn.v``, ...).
        dims: explicit d grid; ``None`` runs the adaptive search (coarse log grid, then refinement).
        projection: registered projection kind (``fastfood``, ``dense``, ``sparse``, ``grouping``).
        threshold: fraction in (0, 1] defining d90 (0.9).
        seeds: seeds 0..seeds-1; each seed draws its own k-shot sample, training order and projection.
        head: ``train`` (initialised from the linear probe, trained jointly) or ``frozen`` (the linear-probe head).
        said: structure-aware intrinsic dimension (one learned scale per tensor, counted in d).
        d_min: smallest d of the coarse grid.
        points_per_decade: density of the coarse grid.
        max_d: largest d the adaptive search may try (default: D of each set); a set whose curve stays below the
            threshold up to it is reported as "not reached within max d".
        max_refinements: refinement rounds after the coarse grid (``search="adaptive"``).
        search: ``"adaptive"`` (default) measures each set's curve on a coarse grid and refines it between the
            bracketing points: a d90 per set. ``"lean"`` races the sets for their order: every set is first trained at
            the top of its grid (d = D unless ``max_d``: plain training of the set, which the ``direct`` selector
            reads); a set that does not reach the bar there is done; the others are bisected on the coarse grid
            only while their d90 interval overlaps another set's. It answers "which order" for a fraction of the
            trainings, and a d90 only as fine as the order needed (``docs/probe_validation.md`` compares the two).
        ft_lr: learning rate of the backbone in the full fine-tuning baseline (the ceiling). Every other setting of
            that baseline is the recipe's; raw weights need a smaller step than the subspace coordinates theta_d.
        lr_scaling: how theta_d's learning rate depends on d (:func:`theta_lr`): ``"sqrt"`` (default: ``theta_step
            / sqrt(d)``, the same step length in weight space at every d) or ``"constant"`` (the recipe's ``lr``
            at every d).
        theta_step: with ``"sqrt"``, the weight-space length of one Adam step on theta_d (1.0: lr 0.01 at
            d = 10,000, 0.1 at d = 100; chosen on validation in ``docs/probe_validation.md``).
        lr_grid: multipliers of that learning rate tried at every (target, d); the one with the best seed-mean
            validation accuracy is kept (``[1.0]``: the rule alone; ``[0.3, 1, 3]`` costs three times the trials).
        lr_grid_extend: at a (target, d) whose best multiplier is the largest (smallest) of those tried there, try
            the next one beyond it, spaced as the grid's two outermost, up to this many times per point and side (0:
            the grid as given). A best value on a grid's edge says the optimum may lie beyond it; this follows it
            at the points that need it, instead of widening the grid at every point.
        lr_screen_epochs: with a grid, every multiplier first trains this many epochs (the recipe's schedule
            compressed to them: a screen), and only the one the screens keep on validation trains the full recipe
            (multi-fidelity: a grid of k costs k screens and one training instead of k trainings). None: every
            multiplier trains in full.
        recipe: training recipe of every trial, baselines included (``recipe.lr`` is theta_d's rate only with
            ``lr_scaling="constant"``; ``recipe.head_lr`` is the classifier's in every trial).
    """

    targets: list[str] = field(default_factory=lambda: list(DEFAULT_PROBE_TARGETS))
    per_block: bool = False
    dims: list[int] | None = None
    projection: str = "fastfood"
    threshold: float = 0.9
    seeds: int = 2
    head: str = "train"
    said: bool = False
    d_min: int = 4
    points_per_decade: int = 2
    max_d: int | None = None
    ft_lr: float = 1e-3
    lr_scaling: str = "sqrt"
    theta_step: float = 1.0
    lr_grid: list[float] = field(default_factory=lambda: [1.0])
    lr_grid_extend: int = 0
    lr_screen_epochs: int | None = None
    max_refinements: int = 2
    search: str = "adaptive"
    recipe: Recipe = field(default_factory=default_probe_recipe)

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "targets": [ListOf(_SPEC, non_empty=True, what="target specs such as 'attn' or 'blocks[0-5].mlp'")],
        "per_block": ["boolean"],
        "dims": [ListOf(_AT_LEAST_ONE, non_empty=True), Unset("the adaptive search")],
        "projection": [str],
        "threshold": [Interval(Real, 0, 1, closed="right")],
        "seeds": [_AT_LEAST_ONE],
        "head": [Options(str, HEAD_MODES)],
        "said": ["boolean"],
        "d_min": [_AT_LEAST_ONE],
        "points_per_decade": [_AT_LEAST_ONE],
        "max_d": [_AT_LEAST_ONE, Unset("D of each set")],
        "ft_lr": [_POSITIVE],
        "lr_scaling": [Options(str, LR_SCALINGS)],
        "theta_step": [_POSITIVE],
        "lr_grid": [ListOf(_POSITIVE, non_empty=True, unique=True, what="learning-rate multipliers > 0")],
        "lr_grid_extend": [Interval(Integral, 0, None, closed="left")],
        "lr_screen_epochs": [_AT_LEAST_ONE, Unset("every multiplier trains in full")],
        "max_refinements": [Interval(Integral, 0, None, closed="left")],
        "search": [Options(str, SEARCHES)],
        "recipe": [Recipe],
    }

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.lr_screen_epochs is not None and self.lr_screen_epochs >= self.recipe.epochs:
            raise PetlError(
                f"ProbeConfig.lr_screen_epochs must be fewer than the recipe's {self.recipe.epochs} epochs (a screen "
                f"is a shorter training), got {self.lr_screen_epochs}"
            )

    @property
    def floor(self) -> str:
        """The baseline that is the curve's d = 0 point: the trained head (``head``), or the frozen linear probe."""
        return "head" if self.head == "train" else "lp"

    def base_theta_lr(self) -> float:
        return self.theta_step if self.lr_scaling == "sqrt" else self.recipe.lr

    def lr_beyond(self, tried: Sequence[float], best: float) -> float | None:
        """The multiplier :attr:`lr_grid_extend` tries next at a point whose multipliers ``tried`` chose ``best``:
        one grid step beyond the edge ``best`` is on, or None (not on an edge, or the extension used up)."""
        grid, tried = sorted(self.lr_grid), sorted(tried)
        if len(grid) < 2 or not self.lr_grid_extend:
            return None
        up, down = self.lr_range()
        if math.isclose(best, tried[-1]) and tried[-1] < up * (1 - 1e-9):
            return tried[-1] * grid[-1] / grid[-2]
        if math.isclose(best, tried[0]) and tried[0] > down * (1 + 1e-9):
            return tried[0] * grid[0] / grid[1]
        return None

    def searches_lr(self, lr: float | None, d: int | None) -> bool:
        """Whether a subspace trial's ``lr`` at ``d`` is one this probe's search could try there: the rule times a
        multiplier of the grid, or of the steps :attr:`lr_grid_extend` may add beyond its ends."""
        if lr is None or not d:
            return False
        m = self.lr_multiplier(lr, d)
        return any(math.isclose(m, r, rel_tol=1e-6) for r in self.lr_reach())

    def lr_multiplier(self, lr: float, d: int) -> float:
        """The multiplier of the step rule (:func:`theta_lr`) that a subspace trial's ``lr`` at ``d`` stands for."""
        return lr / theta_lr(self.base_theta_lr(), d, self.lr_scaling)

    def lr_reach(self) -> list[float]:
        """Every multiplier a point can try, ascending: the grid, and :attr:`lr_grid_extend` steps beyond each end,
        spaced as the grid's two outermost there."""
        grid, k = sorted(self.lr_grid), self.lr_grid_extend
        if len(grid) < 2:
            return grid
        down = [grid[0] * (grid[0] / grid[1]) ** i for i in range(k, 0, -1)]
        up = [grid[-1] * (grid[-1] / grid[-2]) ** i for i in range(1, k + 1)]
        return [*down, *grid, *up]

    def lr_range(self) -> tuple[float, float]:
        """``(largest, smallest)`` multiplier a point can reach (:meth:`lr_reach`'s ends). A best multiplier there is
        on the edge of the search."""
        reach = self.lr_reach()
        return reach[-1], reach[0]
