"""KAdaptation modules: shared rule matrices, per-unit Kronecker deltas, per-layer bias shifts.

Initialisation (``init="default"``), chosen so that ``ΔW = 0`` at step 0, every factor learns, and ``scale=1``
matches LoRA with ``alpha = r`` in update size: after one Adam step on ``v`` (entries ``±lr``) the entries of ``ΔW``
have standard deviation ``s·sqrt(n·r)·σ_A·σ_u·lr``; LoRA's (kaiming ``A``, zero ``B``) have
``(alpha/r)·sqrt(r)·lr/sqrt(3·d_in)``. Hence ``σ_A = 1/n`` (entries of ``A_i``; factorised: ``a_i, b_i ~
N(0, 1/n)`` so ``A_i = a_i b_iᵀ`` has entry std ``1/n``) and ``u ~ U(±1/sqrt(d_in/n))`` (kaiming on the fan-in of
a ``B_i`` block); ``v = 0``.

``init="pevit"`` reproduces the official PEViT code (github.com/eric-ai-lab/PEViT at ``be6fb43``: ``A`` factors
``U(±0.01)``; its ``glorot-uniform`` branch with ``factorized_phm=True`` zeroes both ``u`` and ``v``). Every
gradient into ``A``, ``u``, ``v`` is then a product with a zero factor, so it is exactly zero and stays zero: only
the bias and the head learn (``tests/test_kron.py::test_pevit_init_trains_only_bias_and_head`` shows it).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...accounting import AdapterModule
from ...functional.kron import factored_kron_sum, kron_sum, low_rank
from ..deltas import DeltaMixin


class KronRules(AdapterModule):
    """One set of ``n`` rule matrices ``A_i`` (``n×n``), shared by every unit of a sharing group.

    Attributes:
        a, b: ``(n, n)`` each when factorised: ``A_i = a[i] b[i]ᵀ``.
        A: ``(n, n, n)`` when not factorised.
    """

    def __init__(self, n: int, factorised: bool, init: str) -> None:
        super().__init__()
        self.n, self.factorised = n, factorised
        if factorised:
            self.a = nn.Parameter(torch.empty(n, n))
            self.b = nn.Parameter(torch.empty(n, n))
        else:
            self.A = nn.Parameter(torch.empty(n, n, n))
        with torch.no_grad():
            for p in self.parameters():
                if init == "pevit":
                    p.uniform_(-0.01, 0.01)
                elif factorised:
                    p.normal_(0.0, 1.0 / math.sqrt(n))
                else:
                    p.normal_(0.0, 1.0 / n)

    def matrices(self) -> torch.Tensor:
        """The rule matrices as one ``(n, n, n)`` tensor."""
        if self.factorised:
            return self.a.unsqueeze(-1) * self.b.unsqueeze(-2)
        return self.A

    def extra_repr(self) -> str:
        return f"n={self.n}, factorised={self.factorised}"


class KronDelta(DeltaMixin, AdapterModule):
    """``ΔW = scale · Σ_i A_i ⊗ (u_i v_iᵀ)`` for one ``d_out × d_in`` weight (or row slice).

    Attributes:
        rules: the (possibly shared) :class:`KronRules`.
        u: ``(n, d_out/n, r)``.
        v: ``(n, d_in/n, r)``.
    """

    def __init__(
        self, rules: KronRules, out_features: int, in_features: int, rank: int, scale: float, dropout: float, init: str
    ) -> None:
        super().__init__()
        n = rules.n
        self.rules = rules
        self.scale, self.dropout = scale, dropout
        self.u = nn.Parameter(torch.zeros(n, out_features // n, rank))
        self.v = nn.Parameter(torch.zeros(n, in_features // n, rank))
        if init == "default":
            bound = 1.0 / math.sqrt(in_features // n)
            with torch.no_grad():
                self.u.uniform_(-bound, bound)

    def delta(self) -> torch.Tensor:
        rules = self.rules
        if rules.factorised:
            d = factored_kron_sum(rules.a, rules.b, self.u, self.v)
        else:
            d = kron_sum(rules.A, low_rank(self.u, self.v))
        return d * self.scale

    def extra_repr(self) -> str:
        n, p, r = self.u.shape
        return f"out={n * p}, in={n * self.v.shape[1]}, n={n}, rank={r}, scale={self.scale}"


class BiasShift(DeltaMixin, AdapterModule):
    """PEViT's per-layer bias ``b``: one trainable vector added to the outputs of several units (zero at init)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.zeros(features))

    def delta(self) -> torch.Tensor:
        return self.b
