"""`work --compile` and `--pack`: training-step time eager vs `torch.compile`d, K jobs one at a
time vs one packed step.

Times K optimizer-free forward/backward passes of the task's loss, (a) one job after another
and (b) as one packed step (vmap over the K jobs' stacked adapters, as `train_packed` runs it),
each eager and compiled. Dropout is off so that every mode computes the same thing. Prints the
compile time (first call) and the median time of the rest.

    python benchmarks/compile_step.py [--setting encoder|smollm2] [--pack 8] [--steps 4] [--profile]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SETTINGS = {
    "encoder": {"task": "bbc-news", "batch_size": 16, "max_length": 64},
    "smollm2": {"task": "gsm8k-mini", "batch_size": 4, "max_length": 128},
}


def main() -> None:
    import torch
    from torch.func import vmap

    from lorabench.config import resolve_job
    from lorabench.train.loop import build_model
    from lorabench.train.packed import _Bound

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="encoder")
    parser.add_argument("--variant", default="lora")
    parser.add_argument("--pack", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print torch.profiler's top operators of the eager modes",
    )
    args = parser.parse_args()
    config = resolve_job({**SETTINGS[args.setting], "variant": args.variant, "lr": 1e-4,
                          "seed": 0})  # fmt: skip
    task, model, _ = build_model(config)
    model.to(args.device)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    data = task.load("train")
    rows = data[: config.batch_size]
    batch = {k: v.to(args.device) for k, v in task.collate(rows).items()}
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    jobs = [{n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()
             if p.requires_grad} for _ in range(args.pack)]  # fmt: skip

    def job_loss(params: dict, batch: dict) -> torch.Tensor:
        return task.loss(_Bound(model, params), batch)

    def one_at_a_time(runner: torch.nn.Module):  # noqa: ANN202
        def run() -> None:
            for _ in range(args.pack):
                task.loss(runner, batch).backward()

        return run

    def packed(loss):  # noqa: ANN001, ANN202
        def run() -> None:
            stacked = {n: torch.stack([job[n] for job in jobs]) for n in names}
            loss(stacked, batch).sum().backward()

        return run

    def timed(run) -> tuple[float, float]:  # noqa: ANN001
        def once() -> float:
            started = time.perf_counter()
            run()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            return time.perf_counter() - started

        first = once()
        return first, sorted(once() for _ in range(args.steps))[args.steps // 2]

    vmapped = vmap(job_loss, in_dims=(0, None), randomness="different")
    modes = {
        "one at a time, eager": one_at_a_time(model),
        "packed, eager": packed(vmapped),
        "one at a time, compiled": one_at_a_time(torch.compile(model)),
        "packed, compiled": packed(torch.compile(vmapped)),
    }
    print(f"{args.setting}, {args.variant}, K = {args.pack}, batch {config.batch_size} x "
          f"{config.max_length} tokens, {args.device}")  # fmt: skip
    print("| mode | first call s | median s (K jobs' forward+backward) |")
    print("|---|--:|--:|")
    medians = {}
    for label, run in modes.items():
        first, medians[label] = timed(run)
        print(f"| {label} | {first:.1f} | {medians[label]:.2f} |")
    if args.profile:
        from torch.profiler import profile

        for label in ("one at a time, eager", "packed, eager"):
            with profile() as profiler:
                modes[label]()
            print(label)
            print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    base = medians["one at a time, eager"]
    print("speed vs one at a time, eager: " + ", ".join(
        f"{label} {base / value:.2f}x" for label, value in medians.items()))  # fmt: skip


if __name__ == "__main__":
    main()
