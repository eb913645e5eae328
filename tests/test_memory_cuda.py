"""The memory estimate against a measured peak (`pytest -m cuda`): a small random Llama with
adapters on every projection, one warm-up step (so AdamW's state exists), then the second
step's `torch.cuda.max_memory_allocated` against `lorabench.memory.estimate_peak`.

Skipped without CUDA, also under LORABENCH_TEST_DEVICE=cpu: CPU peaks (tracemalloc, RSS) count
other things (the allocator, the interpreter, freed pages), so on the CPU the arithmetic is
checked by hand in test_memory_estimate.py instead. The tolerance is the estimate's stated
accuracy, not a fit: a failure prints both numbers.
"""

from __future__ import annotations

import pytest
import torch

from lorabench.catalog.tasks._nlg import LLAMA_TARGETS
from lorabench.memory import estimate_peak, from_config

pytestmark = pytest.mark.cuda

CONFIG = {"model_type": "llama", "hidden_size": 1024, "intermediate_size": 2816,
          "num_hidden_layers": 4, "num_attention_heads": 8, "num_key_value_heads": 2,
          "vocab_size": 16384, "tie_word_embeddings": False}  # fmt: skip
BATCH, LENGTH = 4, 512
TOLERANCE = 0.3


def measured_peak(variant: str, base_dtype: str, grad_ckpt: bool) -> int:
    transformers = pytest.importorskip("transformers")
    from lorabench.tasks.nlg import response_loss
    from lorabench.train.loop import enable_grad_ckpt
    from lorabench.variants import inject

    torch.manual_seed(0)
    sizes = {k: v for k, v in CONFIG.items() if k != "model_type"}
    config = transformers.LlamaConfig(**sizes, attn_implementation="sdpa")
    dtype = torch.bfloat16 if base_dtype == "bf16" else torch.float32
    model = transformers.LlamaForCausalLM(config).to(device="cuda", dtype=dtype)
    inject(model, variant, targets=LLAMA_TARGETS, rank=8, alpha=16)
    if grad_ckpt:
        enable_grad_ckpt(model)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, CONFIG["vocab_size"], (BATCH, LENGTH), device="cuda")
    for step in range(2):
        if step == 1:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = response_loss(model(input_ids=ids).logits, ids)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


@pytest.mark.parametrize(
    ("variant", "base_dtype", "grad_ckpt"),
    [("lora", "bf16", False), ("lora", "fp32", False), ("lora", "bf16", True),
     ("dora", "bf16", False), ("hira", "bf16", False), ("randlora", "bf16", False)],
)  # fmt: skip
def test_estimate_is_near_the_measured_peak(variant: str, base_dtype: str, grad_ckpt: bool):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: a CPU peak is not comparable")
    measured = measured_peak(variant, base_dtype, grad_ckpt)
    job = {"task": "gsm8k", "model": "random", "variant": variant, "rank": 8,
           "variant_params": {}, "targets": list(LLAMA_TARGETS), "batch_size": BATCH,
           "max_length": LENGTH, "precision": "bf16", "base_dtype": base_dtype,
           "dropout": 0.0}  # fmt: skip
    estimate = estimate_peak(job, from_config(CONFIG))
    predicted = estimate.peak_ckpt if grad_ckpt else estimate.peak
    assert predicted is not None
    ratio = predicted / measured
    assert abs(ratio - 1) < TOLERANCE, f"estimate {predicted:,} B vs measured {measured:,} B"
