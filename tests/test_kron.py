"""The Kronecker maths of petl_analysis.functional.kron against dense torch.kron references."""

from __future__ import annotations

import pytest
import torch

from petl_analysis.errors import PetlError
from petl_analysis.functional.kron import common_divisors, factored_kron_sum, kron_sum, low_rank, rank1


def _dense(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    return sum(torch.kron(A[i], B[i]) for i in range(A.shape[0]))


@pytest.mark.parametrize("shapes", [(3, 2, 5, 4, 3), (1, 1, 1, 7, 2), (4, 4, 4, 6, 6)])
def test_kron_sum_matches_dense(shapes) -> None:
    n, a1, a2, b1, b2 = shapes
    g = torch.Generator().manual_seed(0)
    A, B = (
        torch.randn(n, a1, a2, generator=g, dtype=torch.float64),
        torch.randn(n, b1, b2, generator=g, dtype=torch.float64),
    )
    out = kron_sum(A, B)
    assert out.shape == (a1 * b1, a2 * b2)
    torch.testing.assert_close(out, _dense(A, B))


@pytest.mark.parametrize("r", [1, 3])
def test_factored_kron_sum_matches_dense(r: int) -> None:
    g = torch.Generator().manual_seed(1)
    n, a1, a2, b1, b2 = 4, 4, 3, 5, 2
    a, b = torch.randn(n, a1, generator=g, dtype=torch.float64), torch.randn(n, a2, generator=g, dtype=torch.float64)
    u, v = (
        torch.randn(n, b1, r, generator=g, dtype=torch.float64),
        torch.randn(n, b2, r, generator=g, dtype=torch.float64),
    )
    torch.testing.assert_close(factored_kron_sum(a, b, u, v), _dense(rank1(a, b), low_rank(u, v)))


def test_rank_helpers_and_gradients() -> None:
    u, v = torch.randn(2, 3), torch.randn(2, 4)
    torch.testing.assert_close(rank1(u, v)[1], torch.outer(u[1], v[1]))
    U, V = torch.randn(2, 3, 2, requires_grad=True), torch.randn(2, 4, 2)
    torch.testing.assert_close(low_rank(U, V)[0], U[0] @ V[0].T)
    A = torch.randn(2, 2, 2, requires_grad=True)
    kron_sum(A, low_rank(U, V)).sum().backward()
    assert A.grad is not None and U.grad is not None and torch.count_nonzero(A.grad) > 0


def test_common_divisors() -> None:
    assert common_divisors(768, 768) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 768]
    assert common_divisors(64, 256, 96) == [1, 2, 4, 8, 16, 32]
    with pytest.raises(ValueError, match="positive dimensions") as e:
        common_divisors(0, 4)
    assert type(e.value) is ValueError  # pure maths: the caller turns it into a user error


def test_one_definition_of_the_valid_kronecker_n() -> None:
    # The planner chooses n from the method's own valid set, and the method accepts exactly that set.
    from petl_analysis.models import ModelSpec, create_model, resolve_targets
    from petl_analysis.plan import planner
    from petl_analysis.tuners import KAdaptationConfig, apply_method
    from petl_analysis.tuners.kadaptation import planned_ns, valid_ns

    net = create_model(ModelSpec("petl_vit_tiny", weights="random", num_classes=3))
    units = resolve_targets(net, ["attn.v", "mlp.fc1"])  # 64x64 and 256x64: common divisors of 64
    assert valid_ns(units) == common_divisors(64, 256) == [1, 2, 4, 8, 16, 32, 64]
    assert planned_ns(units) == [2, 4, 8]  # n >= 2 and n*n <= 64
    assert not hasattr(planner, "_divisors_common") and not hasattr(planner, "_valid_ns")
    for n in planned_ns(units):
        apply_method(
            create_model(ModelSpec("petl_vit_tiny", weights="random", num_classes=3)),
            KAdaptationConfig(targets=["attn.v", "mlp.fc1"], n=n),
        )
    with pytest.raises(PetlError, match="valid n for these targets: 1, 2, 4, 8, 16, 32, 64"):
        apply_method(net, KAdaptationConfig(targets=["attn.v", "mlp.fc1"], n=3))


def test_pevit_init_trains_only_bias_and_head() -> None:
    # The official init (A ~ U(+-0.01), u = v = 0): every gradient into A, u and v has a zero factor.
    from petl_analysis.models import ModelSpec, create_model
    from petl_analysis.tuners import KAdaptationConfig, apply_method

    torch.manual_seed(0)
    net = create_model(ModelSpec("petl_vit_tiny", weights="random", num_classes=3))
    apply_method(net, KAdaptationConfig(targets=["attn.q", "attn.v"], n=4, init="pevit", bias=True))
    x = torch.randn(2, net.patch_embed.proj.in_channels, *net.patch_embed.img_size)
    net(x).sum().backward()
    grads = {n: p.grad for n, p in net.named_parameters() if p.requires_grad}
    kron = {n: g for n, g in grads.items() if "kadaptation_attn" in n}  # u, v and the rules a, b
    learns = {n: g for n, g in grads.items() if "kadaptation_bias" in n or n.startswith("head.")}
    assert len(kron) == 4 * 4 + 2 * 2 and len(learns) == 4 + 2
    assert all(g is not None and float(g.abs().max()) == 0.0 for g in kron.values())
    assert all(g is not None and float(g.abs().max()) > 0.0 for g in learns.values())
