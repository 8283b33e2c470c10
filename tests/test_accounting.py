from __future__ import annotations

import torch
from torch import nn

from petl_analysis.accounting import AdapterModule, ParamCount, count_parameters


def _freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def test_full_model_counts_by_hand(tiny_vit) -> None:
    c = count_parameters(tiny_vit)
    E, depth, classes, tokens = 64, 4, 5, 16
    per_block_weights = 3 * E * E + E * E + 4 * E * E + 4 * E * E
    per_block_bias_norm = 3 * E + E + 4 * E + E + 2 * (2 * E)
    embed = E * 1 * 4 * 4 + tokens * E  # patch conv weight + pos_embed (no cls token)
    assert c.head == E * classes + classes
    assert c.backbone == depth * per_block_weights + embed
    assert c.bias_norm == depth * per_block_bias_norm + E + 2 * E  # conv bias + final norm
    assert c.adapter == c.shared == 0
    assert c.total == c.model_total == sum(p.numel() for p in tiny_vit.parameters())
    assert c.total_excl_head == c.total - c.head


def test_head_only(tiny_vit) -> None:
    _freeze(tiny_vit)
    tiny_vit.get_classifier().requires_grad_(True)
    c = count_parameters(tiny_vit)
    assert (c.head, c.total, c.total_excl_head) == (325, 325, 0)


class _SharedAdapter(AdapterModule):
    def __init__(self, shared: nn.Parameter) -> None:
        super().__init__()
        self.shared = shared  # the same tensor in several layers
        self.own = nn.Parameter(torch.zeros(3))


def test_shared_tensor_counted_once(tiny_vit) -> None:
    _freeze(tiny_vit)
    shared = nn.Parameter(torch.zeros(4, 4))
    for _i, blk in enumerate(tiny_vit.blocks):
        blk.add_module("petl_adapter", _SharedAdapter(shared))
    c = count_parameters(tiny_vit)
    assert c.shared == 16  # not 4 * 16
    assert c.adapter == 4 * 3
    assert c.head == 0 and c.total == 16 + 12


def test_param_count_round_trip() -> None:
    c = ParamCount(head=1, adapter=2, shared=3, bias_norm=4, backbone=5, model_total=100)
    assert ParamCount.from_dict(c.as_dict()) == c
    assert c.as_dict()["total_incl_head"] == 15 and c.as_dict()["total_excl_head"] == 14
