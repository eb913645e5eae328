"""Training-step throughput: K jobs one at a time vs one packed step, eager vs `torch.compile`.

Times the K jobs' forward + backward of the task's loss, (a) one job after another and (b) as
one packed step (vmap over the K jobs' stacked adapters, as `train_packed` runs it), each eager
and compiled. Dropout is off so that every mode computes the same thing. Prints the first call
(which includes compiling), the median of the rest, tokens/s and, on CUDA, the model FLOPs
utilisation (MFU).

Settings: the embedded encoder and SmolLM2 as the tasks run them, and `llama-1b|3b|8b`: the
real Llama-3.2-1B/3B and Llama-3.1-8B architectures (layers, widths, heads, grouped KV heads)
randomly initialised in bf16, with SmolLM2's tokenizer and vocabulary (49,152 rows instead of
128,256) so that nothing is downloaded. LoRA r = 8 on every linear layer of the blocks.

MFU counts the FLOPs a LoRA step must do: 2N forward and 2N for the input gradients of the N
frozen linear weights (no weight gradients), the adapters' own (negligible), and causal
attention at 6 * layers * length * width per token (forward plus twice that backward); divided
by the device's dense bf16 peak (`--peak-tflops`, 989 for an H100/H200 SXM).

    python benchmarks/step_throughput.py [--setting encoder|smollm2|llama-1b|llama-3b|llama-8b]
        [--pack 8] [--batch B] [--length T] [--steps 4] [--device cuda] [--precision bf16]
        [--modes eager,compiled] [--profile] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SETTINGS = {
    "encoder": {"task": "bbc-news", "batch_size": 16, "max_length": 64},
    "smollm2": {"task": "gsm8k-mini", "batch_size": 4, "max_length": 128},
    "llama-1b": {"task": "gsm8k-mini", "batch_size": 4, "max_length": 512},
    "llama-3b": {"task": "gsm8k-mini", "batch_size": 4, "max_length": 512},
    "llama-8b": {"task": "gsm8k-mini", "batch_size": 2, "max_length": 512},
    "llama-tiny": {"task": "gsm8k-mini", "batch_size": 2, "max_length": 64},
}
# The published architectures (config.json of meta-llama/Llama-3.2-1B, -3B, Llama-3.1-8B).
LLAMA = {
    "llama-1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                 "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": True},
    "llama-3b": {"hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
                 "num_attention_heads": 24, "num_key_value_heads": 8, "tie_word_embeddings": True},
    "llama-8b": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                 "num_attention_heads": 32, "num_key_value_heads": 8,
                 "tie_word_embeddings": False},
    # The same kinds of layer at a size the CPU steps through in milliseconds (gpu_check --smoke).
    "llama-tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "num_key_value_heads": 2,
                   "tie_word_embeddings": False},
}  # fmt: skip
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def random_llama(size: str, folder: Path) -> str:
    """A randomly initialised Llama of the real shape, with SmolLM2's tokenizer, in `folder`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lorabench.tasks.models import SMOLLM2, resolve_model

    tokenizer_from = Path(resolve_model(SMOLLM2))
    config = LlamaConfig(**LLAMA[size], vocab_size=49152, max_position_embeddings=8192,
                         rope_theta=500000.0, rms_norm_eps=1e-5, bos_token_id=1,
                         eos_token_id=2, torch_dtype="bfloat16")  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    for name in tokenizer_from.iterdir():
        if name.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
            shutil.copy(name, folder / name.name)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="encoder")
    parser.add_argument("--variant", default="lora")
    parser.add_argument("--pack", type=int, default=8)
    parser.add_argument("--batch", type=int, help="per job (default: the setting's)")
    parser.add_argument("--length", type=int, help="max tokens per row (default: the setting's)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--modes", default="eager,compiled")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--json", help="also write the rows to this file, each as it is measured")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print torch.profiler's top operators of the eager modes",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        values = dict(SETTINGS[args.setting])
        if args.setting in LLAMA:
            values["model"] = random_llama(args.setting, Path(folder))
            values["targets"] = TARGETS
        values["batch_size"] = args.batch or values["batch_size"]
        values["max_length"] = args.length or values["max_length"]
        run(args, values)


def run(args: argparse.Namespace, values: dict) -> None:
    import torch
    from torch.func import vmap

    from lorabench.config import resolve_job
    from lorabench.train.loop import autocast_for, build_model
    from lorabench.train.packed import _Bound

    # A bf16 run keeps the frozen base in bf16 too (the paper's setting; fp32 adapters).
    config = resolve_job({**values, "variant": args.variant, "lr": 1e-4, "seed": 0,
                          "precision": args.precision, "base_dtype": args.precision})  # fmt: skip
    task, model, _ = build_model(config)
    model.to(args.device)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    data = task.load("train")
    rows = data[: config.batch_size]
    batch = {k: v.to(args.device) for k, v in task.collate(rows).items()}
    tokens = batch["input_ids"].numel() * args.pack
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    jobs = [{n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()
             if p.requires_grad} for _ in range(args.pack)]  # fmt: skip
    autocast = autocast_for(config, torch.device(args.device))

    def job_loss(params: dict, batch: dict) -> torch.Tensor:
        return task.loss(_Bound(model, params), batch)

    def one_at_a_time(runner: torch.nn.Module):  # noqa: ANN202
        def run() -> None:
            for _ in range(args.pack):
                with autocast:
                    loss = task.loss(runner, batch)
                loss.backward()

        return run

    def packed(loss):  # noqa: ANN001, ANN202
        def run() -> None:
            stacked = {n: torch.stack([job[n] for job in jobs]) for n in names}
            with autocast:
                losses = loss(stacked, batch)
            losses.sum().backward()

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
    wanted = args.modes.split(",")
    modes = {}
    if "eager" in wanted:
        modes["one at a time, eager"] = one_at_a_time(model)
        modes["packed, eager"] = packed(vmapped)
    if "compiled" in wanted:
        modes["one at a time, compiled"] = one_at_a_time(torch.compile(model))
        modes["packed, compiled"] = packed(torch.compile(vmapped))
    flops = step_flops(model, batch["input_ids"].shape[1]) * tokens
    cuda = args.device.startswith("cuda")
    device = torch.cuda.get_device_name(args.device) if cuda else args.device
    size = sum(p.numel() for p in model.parameters()) / 1e9
    print(f"{args.setting} ({size:.2f}B parameters), {args.variant}, K = {args.pack}, batch "
          f"{config.batch_size} x {batch['input_ids'].shape[1]} tokens, {args.precision}, "
          f"{device}")  # fmt: skip
    print("| mode | first call s | median s (K jobs) | tokens/s | MFU |")
    print("|---|--:|--:|--:|--:|")
    medians = {}
    record = {"setting": args.setting, "variant": args.variant, "pack": args.pack,
              "batch": config.batch_size, "length": batch["input_ids"].shape[1],
              "precision": args.precision, "device": device, "parameters_b": size,
              "modes": {}}  # fmt: skip
    for label, fn in modes.items():
        first, medians[label] = timed(fn)
        mfu = flops / medians[label] / (args.peak_tflops * 1e12) if cuda else None
        print(f"| {label} | {first:.1f} | {medians[label]:.3f} | {tokens / medians[label]:,.0f} "
              f"| {'—' if mfu is None else f'{mfu:.1%}'} |")  # fmt: skip
        record["modes"][label] = {"first_s": first, "median_s": medians[label],
                                  "tokens_per_s": tokens / medians[label], "mfu": mfu}  # fmt: skip
        if cuda:
            record["peak_gib"] = torch.cuda.max_memory_allocated(args.device) / 2**30
        if args.json:
            Path(args.json).write_text(json.dumps(record, indent=1))
    if cuda:
        print(f"peak memory {torch.cuda.max_memory_allocated(args.device) / 2**30:.1f} GiB")
    if args.profile:
        from torch.profiler import profile

        for label in ("one at a time, eager", "packed, eager"):
            with profile() as profiler:
                modes[label]()
            print(label)
            print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    base = next(iter(medians.values()))
    print(f"speed vs {next(iter(medians))}: " + ", ".join(
        f"{label} {base / value:.2f}x" for label, value in medians.items()))  # fmt: skip


def step_flops(model, length: int) -> float:  # noqa: ANN001
    """FLOPs per token of a LoRA training step (module docstring)."""
    from torch import nn

    from lorabench.variants.base import AdapterLinear

    frozen = sum(m.weight.numel() for m in model.modules()
                 if isinstance(m, nn.Linear) and not m.weight.requires_grad)  # fmt: skip
    adapters = sum(p.numel() for m in model.modules() if isinstance(m, AdapterLinear)
                   for p in m.parameters() if p.requires_grad)  # fmt: skip
    config = model.config
    width = getattr(config, "hidden_size", 0)
    layers = getattr(config, "num_hidden_layers", 0)
    return 4 * frozen + 6 * adapters + 6 * layers * length * width


if __name__ == "__main__":
    main()
