"""MoLA: layer-wise expert counts (2-4-6-8 over depth), top-2 routing, balancing loss."""

import pytest
import torch
from helpers import randomise
from torch import nn

from lorabench.variants import (
    InvalidVariantParams,
    Site,
    adapter_layers,
    adapter_state_dict,
    build_params,
    get_variant,
    inject,
)
from lorabench.variants.inject import SHARED_ATTR
from lorabench.variants.mola import MoLALinear, MoLAParams, allocate

SPEC = get_variant("mola")


def sites(names, in_f=4, out_f=3):
    return [Site(n, n.rpartition(".")[2], in_f, out_f) for n in names]


def test_defaults_and_validation():
    assert build_params("mola", None) == MoLAParams(
        allocation="2,4,6,8", top_k=2, aux_loss_coeff=0.001
    )
    for bad in ["", "2,x", "0,2", "2,,4"]:
        with pytest.raises(InvalidVariantParams):
            build_params("mola", {"allocation": bad})
    assert SPEC.family == "moe" and not SPEC.merges and SPEC.extra_loss is not None


def test_triangle_allocation_over_depth():
    # 32 blocks (MoLA's LLaMA setting): 8 blocks per quarter with 2, 4, 6, 8 experts.
    names = [f"model.layers.{i}.self_attn.q_proj" for i in range(32)]
    assert allocate(sites(names), MoLAParams()) == [2] * 8 + [4] * 8 + [6] * 8 + [8] * 8
    # MiniLM's 6 blocks: floor(l * 4 / 6) -> groups 0,0,1,2,2,3; the pooler takes the top count.
    names = [f"bert.encoder.layer.{i}.attention.self.query" for i in range(6)]
    names.append("bert.pooler.dense")
    assert allocate(sites(names), MoLAParams()) == [2, 2, 4, 6, 6, 8, 8]
    assert allocate(sites(names), MoLAParams(allocation="8,6,4,2")) == [8, 8, 6, 4, 4, 2, 2]
    assert allocate(sites(["", "x"]), MoLAParams()) == [8, 8]  # no block index: top group


def test_minilm_layers_get_their_allocation_registered_once(minilm):
    report = inject(minilm, "mola", targets=("query", "value"), rank=2, alpha=4)
    layers = dict(adapter_layers(minilm))
    counts = [layers[f"bert.encoder.layer.{i}.attention.self.query"].n_experts for i in range(6)]
    assert counts == [2, 2, 4, 6, 6, 8]
    query0 = layers["bert.encoder.layer.0.attention.self.query"]
    assert query0.lora_A.shape == (2 * 2, 384) and query0.lora_router.shape == (2, 384)
    hidden = 384
    # query and value of each block: n experts of rank 2 (A and B) plus an (n, in) router.
    per_block = [n * (2 * (hidden + hidden) + hidden) for n in [2, 2, 4, 6, 6, 8]]
    assert report.adapter_params == 2 * sum(per_block) == 107_520
    # Experts live once in the model-level module: once in parameters, state dict, optimizer.
    trainable = [p for p in minilm.parameters() if p.requires_grad]
    assert len({id(p) for p in trainable}) == len(trainable) == 3 * 12
    assert all(n.startswith(f"{SHARED_ATTR}.") for n in adapter_state_dict(minilm))
    optimizer = torch.optim.AdamW(trainable)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 36
    assert not any(p.requires_grad for _, p in query0.named_parameters())  # a plain reference


def make(in_f=6, out_f=5, rank=2, **params) -> MoLALinear:
    torch.manual_seed(0)
    return MoLALinear(nn.Linear(in_f, out_f), rank=rank, alpha=4.0, params=MoLAParams(**params))


def test_initial_update_zero_and_experts_of_full_rank():
    layer = make(rank=3, allocation="5")
    assert layer.expert_ranks == [3] * 5 and layer.top_k == 2 and layer.scaling == 4.0 / 3
    assert torch.count_nonzero(layer.lora_B) == 0
    x = torch.randn(2, 3, 6)
    assert torch.equal(layer(x), layer.base(x))


def test_routing_top2_and_experts_combine_with_weights():
    layer = make(rank=2, allocation="6")
    randomise(nn.Sequential(layer))
    layer.train()
    x = torch.randn(3, 5, 6)
    with torch.no_grad():
        got = layer(x) - layer.base(x)
    stats = layer.router_stash.stats
    assert torch.equal(stats.mask.sum(-1), torch.full((3, 5), 2))
    assert torch.equal(stats.mask, stats.probs >= stats.probs.topk(2, dim=-1).values[..., -1:])
    rows = []
    for token in x.reshape(-1, 6):
        probs = torch.softmax(layer.lora_router @ token, dim=-1)
        top = torch.argsort(probs, descending=True)[:2].tolist()
        norm = probs[top].sum()
        rows.append(sum(
            probs[i] / norm * layer.scaling * (layer.expert_factors(i)[1]
                                               @ (layer.expert_factors(i)[0] @ token))
            for i in top
        ))  # fmt: skip
    assert torch.allclose(got, torch.stack(rows).reshape(3, 5, 5), atol=1e-5)


def test_aux_loss_matches_hand_computed_value():
    # 4 experts, tokens e1/e2 route with p = [.4 .3 .2 .1] and [.1 .5 .3 .1]: top-2 {0,1}, {1,2}.
    layer = make(in_f=2, out_f=3, rank=1, allocation="4")
    with torch.no_grad():
        layer.lora_router.copy_(torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1],
                                                        [0.1, 0.5, 0.3, 0.1]])).T)  # fmt: skip
    model = nn.Sequential(layer).train()
    model(torch.eye(2))
    # MoLA: picks per expert / all picks = [1/4, 1/2, 1/4, 0], P = [.25, .4, .25, .1];
    # 4 * (.0625 + .2 + .0625) = 1.3, times 0.001.
    assert SPEC.extra_loss(model, layer.params).item() == pytest.approx(1.3e-3, abs=1e-8)
    assert SPEC.extra_loss(model, layer.params) is None  # collected and cleared
    model.eval()
    with torch.no_grad():
        model(torch.eye(2))
    assert SPEC.extra_loss(model, layer.params) is None
