"""LoRA+ (§II-C1): LoRA's update with eta_B = 16 eta_A; rates per parameter as PEFT's."""

import copy
import re

import pytest
import torch
from helpers import randomise
from torch import nn

from lorabench.variants import (
    InvalidVariantParams,
    adapter_layers,
    build_params,
    get_variant,
    inject,
)
from lorabench.variants.lora import LoRALinear
from lorabench.variants.lora_plus import LoRAPlusParams, loraplus_param_groups

SPEC = get_variant("lora-plus")


def groups_for(model, lr, **values):
    return SPEC.param_groups(model, lr, build_params("lora-plus", values))


def test_paper_defaults_and_registration():
    assert build_params("lora-plus", None) == LoRAPlusParams(lr_ratio=16.0)
    assert SPEC.family == "optimization" and SPEC.merges and SPEC.peft
    assert SPEC.param_groups is loraplus_param_groups
    assert issubclass(SPEC.layer_cls, LoRALinear)
    with pytest.raises(InvalidVariantParams):
        build_params("lora-plus", {"lr_ratio": 0.0})


def test_hand_computed_delta_is_plain_lora():
    layer = SPEC.layer_cls(nn.Linear(3, 2), rank=2, alpha=4.0)
    with torch.no_grad():
        layer.lora_A.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]))
        layer.lora_B.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))
    # (alpha / r) B A = 2 * [[1, 2, 0], [3, -1, 7]]
    expected = torch.tensor([[2.0, 4.0, 0.0], [6.0, -2.0, 14.0]])
    assert torch.equal(layer.delta_weight(), expected)
    with torch.no_grad():
        got = layer(torch.tensor([[1.0, -1.0, 0.5]])) - layer.base(torch.tensor([[1.0, -1.0, 0.5]]))
    assert torch.allclose(got, torch.tensor([[-2.0, 15.0]]), atol=1e-6)


@pytest.mark.parametrize("ratio", [16.0, 4.0])
def test_groups_give_b_and_1d_params_ratio_times_lr_the_rest_lr(minilm, ratio):
    inject(minilm, "lora-plus", targets=("query", "value"), rank=4, alpha=8,
           trainable=("classifier",))  # fmt: skip
    groups = groups_for(minilm, 1e-3, lr_ratio=ratio)
    trainable = [p for p in minilm.parameters() if p.requires_grad]
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in trainable)  # each exactly once
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    layers = [layer for _, layer in adapter_layers(minilm)]
    assert len(layers) == 12
    for layer in layers:
        assert lr_of[id(layer.lora_B)] == pytest.approx(ratio * 1e-3)
        assert lr_of[id(layer.lora_A)] == pytest.approx(1e-3)
    # As PEFT's create_loraplus_optimizer: the head's weight at the base rate, its 1-D bias at B's.
    assert lr_of[id(minilm.classifier.weight)] == pytest.approx(1e-3)
    assert lr_of[id(minilm.classifier.bias)] == pytest.approx(ratio * 1e-3)
    # The first group is the base rate: the trainer logs its lr.
    assert groups[0]["lr"] == pytest.approx(1e-3)


def test_one_adamw_step_moves_b_sixteen_times_further_than_a():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5))
    inject(model, "lora-plus", targets=("0",), rank=2, alpha=4)
    randomise(model)  # B != 0 so that A gets a gradient too
    layer = model[0]
    before = {n: p.detach().clone() for n, p in layer.adapter_named_parameters()}
    optimizer = torch.optim.AdamW(groups_for(model, 1e-3), lr=1e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    model(torch.randn(8, 6)).pow(2).sum().backward()
    optimizer.step()
    # AdamW's first step moves every entry by lr * g / (|g| + eps), i.e. by its group's lr.
    moved_a = (layer.lora_A - before["lora_A"]).abs()
    moved_b = (layer.lora_B - before["lora_B"]).abs()
    assert torch.allclose(moved_a, torch.full_like(moved_a, 0.5e-3), rtol=1e-3)
    assert torch.allclose(moved_b, torch.full_like(moved_b, 16 * 0.5e-3), rtol=1e-3)
    schedule.step()
    # A schedule scales every group, so the ratio holds throughout training.
    lrs = [g["lr"] for g in optimizer.param_groups]
    assert lrs[1] / lrs[0] == pytest.approx(16.0)


def test_groups_skip_empty_and_other_variants_layers():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    inject(model, "lora", targets=("0",), rank=2, alpha=4)
    inject(model, "lora-plus", targets=("1",), rank=2, alpha=4)
    groups = groups_for(model, 1.0)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lr_of[id(model[1].lora_B)] == 16.0
    assert lr_of[id(model[0].lora_B)] == 1.0  # plain LoRA layers keep one rate
    bare = nn.Sequential(nn.Linear(4, 4))
    inject(bare, "lora-plus", targets=("0",), rank=2, alpha=4)
    bare[0].lora_A.requires_grad_(False)
    assert [len(g["params"]) for g in groups_for(bare, 1.0)] == [1]  # only B's group is left


def test_peft_export_is_a_plain_lora_config():
    peft = pytest.importorskip("peft")
    from lorabench.variants import PeftSettings

    settings = PeftSettings(targets=["x"], rank=4, alpha=8, dropout=0.0,
                            params=LoRAPlusParams(), modules_to_save=[])  # fmt: skip
    config = SPEC.peft_export.make_config(settings)
    assert isinstance(config, peft.LoraConfig)
    assert config.r == 4 and config.lora_alpha == 8 and not config.use_rslora


class Classifier(nn.Module):
    """An encoder to adapt, a trainable LayerNorm and a new classification head with a bias."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8))
        self.norm = nn.LayerNorm(8)
        self.classifier = nn.Linear(8, 3)

    def forward(self, x):
        return self.classifier(self.norm(self.encoder(x)))


def _our_name(peft_name: str) -> str:
    # base_model.model.X.lora_B.default.weight -> X.lora_B; X.modules_to_save.default.p -> X.p
    name = peft_name.removeprefix("base_model.model.").replace(".modules_to_save.default.", ".")
    return re.sub(r"\.(lora_[AB])\.default\.weight$", r".\1", name)


def test_every_parameter_gets_peft_create_loraplus_optimizer_lr():
    pytest.importorskip("peft")
    from peft.optimizers import create_loraplus_optimizer

    from lorabench.variants.peft_export import to_peft

    base = Classifier()
    ours = copy.deepcopy(base)
    inject(ours, "lora-plus", targets=("encoder.0", "encoder.2"), rank=2, alpha=4,
           trainable=("norm", "classifier"))  # fmt: skip
    theirs = to_peft(ours, lambda: copy.deepcopy(base), "lora-plus", rank=2, alpha=4,
                     dropout=0.0, params=LoRAPlusParams())  # fmt: skip
    optimizer = create_loraplus_optimizer(
        theirs, torch.optim.AdamW, lr=1e-3, loraplus_lr_ratio=16.0
    )
    their_lr = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    want = {_our_name(n): their_lr[id(p)] for n, p in theirs.named_parameters() if p.requires_grad}
    ours_lr = {id(p): g["lr"] for g in groups_for(ours, 1e-3, lr_ratio=16.0) for p in g["params"]}
    got = {n: ours_lr[id(p)] for n, p in ours.named_parameters() if p.requires_grad}
    assert got == want  # the same names, each with exactly PEFT's lr
    assert got == {
        "encoder.0.lora_A": 1e-3, "encoder.0.lora_B": 16e-3,
        "encoder.2.lora_A": 1e-3, "encoder.2.lora_B": 16e-3,
        "norm.weight": 16e-3, "norm.bias": 16e-3,
        "classifier.weight": 1e-3, "classifier.bias": 16e-3,
    }  # fmt: skip
