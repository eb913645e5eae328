"""Training-step cost of every variant relative to LoRA: the analogue of the paper's Table II.

One model (the embedded MiniLM classifier, every linear layer adapted), one batch, each variant
at the paper's settings (r = 8, α = 16; DenseLoRA r = 192, α = 384). Steps are timed
round-robin across variants so drift in machine load hits all of them alike.

Memory: "saved" is the activation memory autograd keeps for backward in one step (device
independent, the quantity the paper's memory column is about); on CUDA the peak allocated
memory is reported too.

    python benchmarks/variant_overhead.py [--device cuda] [--batch 16] [--length 128] [--steps 10]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from lorabench.tasks.models import MINILM, resolve_model
from lorabench.variants import inject, variant_names

# The paper's Table II (Llama-3.1-8B, H200): time relative to LoRA.
PAPER_TIME_RATIO = {
    "dora": 1.98, "hira": 1.74, "randlora": 8.4, "loha": 7.5, "lokr": 7.6, "aurora": 2.67,
    "melora": 1.45, "denselora": 1.55, "rasa": 1.33, "moslora": 1.24, "loran": 1.38,
}  # fmt: skip
PAPER_SETTINGS = {"denselora": {"rank": 192, "alpha": 384.0}}
TARGETS = ("query", "key", "value", "dense")


def build(variant: str, base: torch.nn.Module, device: str, checkpoint: bool):
    model = copy.deepcopy(base)
    settings = {"rank": 8, "alpha": 16.0, **PAPER_SETTINGS.get(variant, {})}
    torch.manual_seed(0)
    report = inject(model, variant, targets=TARGETS, trainable=("classifier",),
                    checkpoint_adapter=checkpoint, **settings)  # fmt: skip
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.AdamW(params, lr=1e-4), report


def saved_bytes(model, batch) -> int:
    """Bytes of distinct storages autograd saves for backward, weights excluded."""
    weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**batch).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(storages.values())


def step(model, optimizer, batch, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    model(**batch).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--variants", default=",".join(variant_names()))
    args = parser.parse_args()
    from transformers import AutoModelForSequenceClassification, logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    base = AutoModelForSequenceClassification.from_pretrained(resolve_model(MINILM), num_labels=5)
    generator = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(1000, 20000, (args.batch, args.length), generator=generator),
        "attention_mask": torch.ones(args.batch, args.length, dtype=torch.long),
        "labels": torch.randint(0, 5, (args.batch,), generator=generator),
    }
    batch = {k: v.to(args.device) for k, v in batch.items()}
    names = args.variants.split(",")
    runs = {name: build(name, base, args.device, False) for name in names}
    if "dora" in names:
        runs["dora†"] = build("dora", base, args.device, True)
    times: dict[str, list[float]] = {name: [] for name in runs}
    memory = {name: saved_bytes(model, batch) / 2**20 for name, (model, _, _) in runs.items()}
    peak: dict[str, float] = {}
    for name, (model, optimizer, _) in runs.items():  # warm-up, and CUDA peaks
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        step(model, optimizer, batch, args.device)
        if args.device.startswith("cuda"):
            peak[name] = torch.cuda.max_memory_allocated() / 2**20
    for _ in range(args.steps):
        for name, (model, optimizer, _) in runs.items():
            times[name].append(step(model, optimizer, batch, args.device))
    lora_time = statistics.median(times["lora"])
    lora_memory = memory["lora"]
    print(f"device {args.device}, batch {args.batch} x {args.length} tokens, "
          f"{args.steps} timed steps per variant (median)\n")  # fmt: skip
    header = "| variant | params | step ms | time × LoRA | paper × | saved MiB | saved × LoRA |"
    if peak:
        header += " peak MiB |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in runs:
        median = statistics.median(times[name])
        key = name.rstrip("†")
        paper = f"{PAPER_TIME_RATIO[key]:.2f}" if key in PAPER_TIME_RATIO and name == key else "—"
        row = (f"| {name} | {runs[name][2].adapter_params:,} | {median * 1000:.1f} | "
               f"{median / lora_time:.2f} | {paper} | {memory[name]:.0f} | "
               f"{memory[name] / lora_memory:.2f} |")  # fmt: skip
        if peak:
            row += f" {peak[name]:.0f} |"
        print(row)


if __name__ == "__main__":
    main()
