"""Checks that need a GPU to mean anything: every variant, packing and padding-free batches on
the device (`pytest -m cuda`, part (a) of benchmarks/gpu_check.py).

Without CUDA they are skipped, except under LORABENCH_TEST_DEVICE=cpu, which runs them on the
CPU (`gpu_check.py --smoke` does, in CI), so they cannot rot between GPU sessions."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
from helpers import randomise
from test_variants import MERGEABLE, VARIANTS, ZERO_INIT, mlp

from lorabench.config import resolve_job
from lorabench.train import TrainResult, train_job
from lorabench.train.packed import pack_refusal, train_packed
from lorabench.variants import adapter_layers, inject, merge_adapters

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def device() -> torch.device:
    wanted = os.environ.get("LORABENCH_TEST_DEVICE")
    if wanted:
        return torch.device(wanted)
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device (LORABENCH_TEST_DEVICE=cpu runs these on the CPU)")
    return torch.device("cuda")


def adapted(variant: str, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    model = mlp().to(dtype)
    inject(model, variant, targets=("0", "2"), rank=3, alpha=5)
    randomise(model, scale=0.05)
    return model.to(device)


def forward(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    with (
        torch.no_grad(),
        torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32),
    ):
        return model(x).float()


@pytest.mark.parametrize("variant", VARIANTS)
def test_fp32_forward_on_the_device_equals_the_cpu(variant, device):
    cpu = adapted(variant, torch.float32, torch.device("cpu"))
    there = copy.deepcopy(cpu).to(device)
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(0))
    expected = forward(cpu, x, torch.float32)
    got = forward(there, x.to(device), torch.float32).cpu()
    assert (got - expected).abs().max().item() <= 1e-4 * max(1.0, expected.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("variant", MERGEABLE)
def test_merge_on_the_device_matches_the_unmerged_layer(variant, dtype, device):
    model = adapted(variant, dtype, device)
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1)).to(device)
    unmerged = forward(model, x, dtype)
    if dtype == torch.bfloat16:  # the merge rounds W + delta once, formed in fp32
        with torch.no_grad():
            expected = {n: (layer.base.weight.float() + layer.delta_weight().float()).to(dtype)
                        for n, layer in adapter_layers(model)}  # fmt: skip
    merge_adapters(model)
    merged = forward(model, x, dtype)
    scale = max(1.0, unmerged.abs().max().item())
    tolerance = 1e-5 if dtype == torch.float32 else 0.03
    assert (merged - unmerged).abs().max().item() <= tolerance * scale
    if dtype == torch.bfloat16:
        for n, layer in adapter_layers(model):
            assert torch.equal(layer.base.weight, expected[n]), n


@pytest.mark.parametrize("variant", ZERO_INIT)
def test_a_fresh_bf16_layer_on_the_device_is_its_base(variant, device):
    model = mlp().to(torch.bfloat16)
    inject(model, variant, targets=("0", "2"), rank=3, alpha=5)
    model.to(device)
    x = torch.randn(8, 6).to(device)
    adapted_out = forward(model, x, torch.bfloat16)
    for _, layer in adapter_layers(model):
        layer.disabled = True
    assert torch.equal(adapted_out, forward(model, x, torch.bfloat16))


def _curve(result: TrainResult) -> list[float]:
    return [v for s, n, _, _, v in result.metrics if (s, n) == ("train", "loss")]


@pytest.mark.parametrize("variant", ["lora", "dora", "vera"])
def test_a_pack_on_the_device_trains_each_job_as_it_trains_alone(variant, device, tmp_path: Path):
    assert pack_refusal(variant) is None
    shared = {"task": "noop", "variant": variant, "seed": 2, "train_size": 48}
    configs = [resolve_job({**shared, "lr": lr}) for lr in (1e-3, 1e-2)]
    packed = train_packed(configs, [tmp_path / "p0", tmp_path / "p1"], device=str(device))
    for i, (config, together) in enumerate(zip(configs, packed, strict=True)):
        assert isinstance(together, TrainResult), together
        alone = train_job(config, tmp_path / f"solo-{i}", device=str(device))
        assert _curve(together) == pytest.approx(_curve(alone), rel=5e-5, abs=5e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_padding_free_rows_give_the_padded_loss_and_gradients_on_the_device(
    dtype, device, tmp_path_factory
):
    """The tiny Llama of test_nlg with a LoRA, on the device: packed rows (SDPA with packed
    position ids, or flash-attention's varlen path on CUDA) against padded rows."""
    from test_nlg import PlainTask, make_tiny_lm, settings

    task = PlainTask(settings(make_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))))
    model = task.load_model().to(dtype)
    inject(model, "lora", targets=["q_proj", "v_proj", "down_proj"], rank=4, alpha=8.0)
    randomise(model, seed=1, scale=0.05)
    model.to(device).train()
    examples = task.encode_pairs([("two", "4"), ("two plus two plus two plus one", "four"),
                                  ("one", ""), ("three plus one", "four is 4")])  # fmt: skip
    results = []
    for batch in (task.collate(examples), task.collate_train(examples)):
        model.zero_grad(set_to_none=True)
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = task.loss(model, batch)
        loss.backward()
        grads = {n: p.grad.float().cpu() for n, p in model.named_parameters() if p.requires_grad}
        results.append((loss.item(), grads))
    (padded, padded_grads), (packed, packed_grads) = results
    assert "position_ids" in task.collate_train(examples)
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    assert abs(packed - padded) <= tolerance * max(1.0, abs(padded))
    for name, grad in padded_grads.items():
        scale = max(1.0, grad.abs().max().item())
        assert (packed_grads[name] - grad).abs().max().item() <= tolerance * scale, name
