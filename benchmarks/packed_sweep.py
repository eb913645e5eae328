"""Packed vs one-at-a-time: jobs/hour for an 8-learning-rate LoRA sweep, side by side.

One-at-a-time is what a worker does per job in its trainer process (build the model, load the
data, train, evaluate); packed trains the 8 jobs in one `train_packed` call (`work --pack 8`).
Both run in this process, one after the other, on the same machine and settings.

    python benchmarks/packed_sweep.py [--setting encoder,smollm2,eval-only] [--device cpu] [--json]
        [--out FILE]

Packed jobs are also scored together (`train.fanout`): "eval-only" times that part alone.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

LRS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
SETTINGS = {
    # The embedded encoder as quickstart runs it (all-MiniLM-L6-v2, bbc-news), 20 steps.
    "encoder": {"task": "bbc-news", "variant": "lora", "seed": 0, "batch_size": 16,
                "max_length": 64, "max_steps": 20, "eval_size": 100},
    # The same at batch 2: small per-job batches, where one job leaves the cores idle.
    "encoder-bs2": {"task": "bbc-news", "variant": "lora", "seed": 0, "batch_size": 2,
                    "max_length": 64, "max_steps": 20, "eval_size": 100},
    # SmolLM2-135M on GSM8K rows: 10 steps, a short greedy evaluation.
    "smollm2": {"task": "gsm8k-mini", "variant": "lora", "seed": 0, "batch_size": 4,
                "max_length": 128, "max_steps": 10, "eval_size": 4,
                "task_params": {"max_new_tokens": 16}},
    # The same training, scored as the paper scores NLG: greedy answers to held-out problems
    # (16 problems, up to 64 new tokens), where generation is most of a job's time.
    "smollm2-eval": {"task": "gsm8k-mini", "variant": "lora", "seed": 0, "batch_size": 4,
                     "max_length": 128, "max_steps": 10, "eval_size": 16,
                     "task_params": {"max_new_tokens": 64}},
    # The trainer's own overhead on a model that computes nothing (gpu_check --smoke).
    "noop": {"task": "noop", "variant": "lora", "seed": 0, "max_steps": 5},
}  # fmt: skip


def measure(setting: str, device: str) -> dict:
    from lorabench.config import resolve_job
    from lorabench.train import train_job
    from lorabench.train.packed import train_packed

    configs = [resolve_job({**SETTINGS[setting], "lr": lr}) for lr in LRS]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        started = time.perf_counter()
        for i, config in enumerate(configs):
            train_job(config, root / f"solo-{i}", device=device)
        solo = time.perf_counter() - started
        started = time.perf_counter()
        results = train_packed(configs, [root / f"packed-{i}" for i in range(len(configs))],
                               device=device)  # fmt: skip
        packed = time.perf_counter() - started
    failed = [str(r) for r in results if isinstance(r, BaseException)]
    return _row(setting, device, len(configs), solo, packed, failed)


def _row(setting: str, device: str, jobs: int, solo: float, packed: float,
         failed: list[str]) -> dict:  # fmt: skip
    return {
        "setting": setting,
        "device": device,
        "jobs": jobs,
        "solo_seconds": solo,
        "packed_seconds": packed,
        "solo_jobs_per_hour": jobs / solo * 3600,
        "packed_jobs_per_hour": jobs / packed * 3600,
        "speedup": solo / packed,
        "failed_in_pack": failed,
    }


def measure_evaluation(device: str, new_tokens: int = 48, eval_batch: int = 8) -> dict:
    """Evaluation alone: 8 LoRA adapters (SmolLM2, every linear layer) each answer the same 8
    GSM8K problems greedily, one adapter at a time vs one fanned-out pass (`train.fanout`)."""
    from lorabench.config import resolve_job
    from lorabench.tasks.generation import generate
    from lorabench.train.fanout import evaluate_fanned
    from lorabench.train.loop import build_model
    from lorabench.train.packed import _load_into

    config = resolve_job({"task": "gsm8k-mini", "variant": "lora", "lr": 1e-3, "seed": 0,
                          "eval_size": eval_batch})  # fmt: skip
    task, model, _ = build_model(config)
    model.to(device)
    prompts = [r["prompt"] for r in task._eval_set()]
    generator = torch.Generator().manual_seed(0)
    jobs = [
        {n: p.detach() + 0.02 * torch.randn(p.shape, generator=generator).to(p)
         for n, p in model.named_parameters() if p.requires_grad}
        for _ in LRS
    ]  # fmt: skip

    def answer(stand_in) -> list[str]:  # noqa: ANN001
        return generate(stand_in, task.tokenizer, prompts, max_new_tokens=new_tokens,
                        batch_size=eval_batch)  # fmt: skip

    started = time.perf_counter()
    alone = []
    for tensors in jobs:
        _load_into(model, tensors)
        alone.append(answer(model))
    solo = time.perf_counter() - started
    started = time.perf_counter()
    fanned = evaluate_fanned(model, jobs, answer)
    packed = time.perf_counter() - started
    differs = [] if fanned == alone else ["fanned text differs from one at a time"]
    setting = f"eval-only ({len(prompts)} problems, {new_tokens} tokens)"
    return _row(setting, device, len(jobs), solo, packed, differs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", default="encoder,encoder-bs2,smollm2,smollm2-eval,eval-only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", help="also write the rows to this file, each as it is measured")
    args = parser.parse_args()
    results = []
    for s in args.setting.split(","):
        results.append(
            measure_evaluation(args.device) if s == "eval-only" else measure(s, args.device)
        )
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1))
    if args.json:
        print(json.dumps(results))
        return
    print("| setting | device | one at a time (jobs/h) | packed K=8 (jobs/h) | speedup |")
    print("|---|---|--:|--:|--:|")
    for r in results:
        print(f"| {r['setting']} | {r['device']} | {r['solo_jobs_per_hour']:.0f} | "
              f"{r['packed_jobs_per_hour']:.0f} | {r['speedup']:.2f}x |")  # fmt: skip
        if r["failed_in_pack"]:
            print(f"  failed in the pack: {r['failed_in_pack']}")


if __name__ == "__main__":
    main()
