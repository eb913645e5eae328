"""The one prepared GPU check: everything lorabench measures on a GPU, in one command.

    python benchmarks/gpu_check.py [--out DIR] [--parts abcd] [--smoke]

Parts, each in its own process with its own time budget (seconds, on one H200), each writing
JSON into DIR as it goes, so a run cut off anywhere still reports every finished part:

  a (90 s)  `pytest -m cuda`: every variant's forward and merge on the device in fp32 and bf16,
            packed vs solo training, padding-free vs padded loss (tests/test_cuda.py), the
            memory estimate against measured peaks (tests/test_memory_cuda.py).
  b (200 s) Table II analogue: the paper-overhead preset's 19 rows on a randomly initialised
            Llama-3.1-8B (bf16 base, sequence 1024, batch 1, r = 8 on all seven projections),
            step time and torch.cuda.max_memory_allocated per row, in one process, beside the
            paper's minutes and MB and lorabench's own memory estimate where it has one.
  c (170 s) benchmarks/step_throughput.py on llama-1b and llama-8b: solo and packed K = 8,
            eager and compiled; tokens/s and MFU.
  d (60 s)  benchmarks/packed_sweep.py --device cuda: jobs/hour of an 8-learning-rate sweep.

Total budget 520 s (under the 9 minutes the issue allows, model construction included).
`--smoke` runs every part on the CPU with tiny shapes in under two minutes; CI runs it
(tests/test_gpu_check.py), so the script cannot rot between GPU sessions.
Results: DIR/summary.json (per part: status, seconds) and DIR/part_<x>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUDGETS = {"a": 90, "b": 200, "c": 170, "d": 60}
SMOKE_BUDGETS = {"a": 60, "b": 40, "c": 40, "d": 30}
# Llama-3.1-8B (config.json of meta-llama/Llama-3.1-8B); `tiny` keeps its proportions' kinds
# (grouped KV heads, untied embeddings) at a size a CPU steps through in milliseconds.
SHAPES = {
    "llama-8b": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                 "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512},
}  # fmt: skip
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# The paper's Table II run: 100k MetaMathQA samples, one epoch, batch 1 (paper-overhead).
PAPER_SAMPLES = 100_000


def write_json(path: Path, data: object) -> None:
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(data, indent=1, default=str))
    staging.replace(path)


# --- the orchestrator ----------------------------------------------------------------------------
def part_commands(part: str, out: Path, smoke: bool) -> list[list[str]]:
    python, device = sys.executable, "cpu" if smoke else "cuda"
    if part == "a":
        return [[python, "-m", "pytest", "-m", "cuda", "-v", "-p", "no:cacheprovider",
                 str(ROOT / "tests")]]  # fmt: skip
    if part == "b":
        return [[python, __file__, "--table2", "--out", str(out), *(["--smoke"] if smoke else [])]]
    if part == "c":
        settings = ["llama-tiny"] if smoke else ["llama-1b", "llama-8b"]
        modes = "eager" if smoke else "eager,compiled"
        return [[python, str(HERE / "step_throughput.py"), "--setting", s, "--device", device,
                 "--precision", "bf16", "--pack", "8", "--steps", "1" if smoke else "3",
                 "--modes", modes, "--json", str(out / f"part_c_{s}.json")]
                for s in settings]  # fmt: skip
    setting = "noop" if smoke else "encoder,smollm2"
    return [[python, str(HERE / "packed_sweep.py"), "--setting", setting, "--device", device,
             "--out", str(out / "part_d.json")]]  # fmt: skip


def run_part(part: str, out: Path, smoke: bool, budget: float) -> dict:
    started, status, log = time.perf_counter(), "ok", out / f"part_{part}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if smoke:
        env["LORABENCH_TEST_DEVICE"] = "cpu"
    with log.open("w") as sink:
        for command in part_commands(part, out, smoke):
            left = budget - (time.perf_counter() - started)
            if left <= 0:
                status = "timeout"
                break
            try:
                done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, env=env,
                                      cwd=ROOT, timeout=left, check=False)  # fmt: skip
            except subprocess.TimeoutExpired:
                status = "timeout"
                break
            if done.returncode != 0:
                status = f"failed (exit {done.returncode})"
    if part == "a":
        write_json(out / "part_a.json", pytest_outcomes(log.read_text()))
    return {"status": status, "seconds": round(time.perf_counter() - started, 1)}


def pytest_outcomes(text: str) -> dict:
    """Each test's outcome from `pytest -v` lines (read as they were written, so a run cut off
    by its budget still reports the tests that finished)."""
    found = re.findall(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)", text, re.M)
    tests = dict(found)
    counts: dict[str, int] = {}
    for outcome in tests.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    return {"counts": counts, "failed": [t for t, o in tests.items() if o in ("FAILED", "ERROR")],
            "tests": tests}  # fmt: skip


def orchestrate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    budgets = SMOKE_BUDGETS if args.smoke else BUDGETS
    summary: dict = {"smoke": args.smoke, "parts": {}, "device": device_name(args.smoke)}
    for part in args.parts:
        summary["parts"][part] = {"status": "running"}
        write_json(out / "summary.json", summary)
        summary["parts"][part] = run_part(part, out, args.smoke, budgets[part])
        write_json(out / "summary.json", summary)
        print(f"part {part}: {summary['parts'][part]}", flush=True)
    return 0 if all(p["status"] == "ok" for p in summary["parts"].values()) else 1


def device_name(smoke: bool) -> str:
    import torch

    if not smoke and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


# --- part b: Table II analogue -------------------------------------------------------------------
def overhead_jobs() -> list:
    from lorabench.cli.presets import load_preset, plan_preset

    parts = plan_preset(load_preset("paper-overhead"), {}).parts
    return [job for _, spec in parts for job in spec.expand(None)]


def random_llama(shape: dict, device: str):  # noqa: ANN201
    """A randomly initialised Llama of `shape`, built straight on the device in bf16."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape, max_position_embeddings=8192, rope_theta=500000.0,
                         rms_norm_eps=1e-5, tie_word_embeddings=False)  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    return model.requires_grad_(False)


def strip_adapters(model) -> None:  # noqa: ANN001
    """Put every wrapped Linear's frozen base back in its place and drop shared parameters."""
    from lorabench.variants import adapter_layers
    from lorabench.variants.inject import SHARED_ATTR

    for name, layer in adapter_layers(model):
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer.base)
    if hasattr(model, SHARED_ATTR):
        delattr(model, SHARED_ATTR)


def table2_row(model, job, *, length: int, steps: int, device: str) -> dict:  # noqa: ANN001
    import torch

    from lorabench.variants import inject

    torch.manual_seed(0)
    injected = inject(model, job.variant, targets=PROJECTIONS, rank=job.rank, alpha=job.alpha,
                      params=job.variant_params,
                      checkpoint_adapter=job.adapter_checkpointing)  # fmt: skip
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=job.lr)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (1, length), generator=generator).to(device)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps + 1):  # the first step warms up (allocator, kernels) and is not timed
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() if cuda else float("nan")
    strip_adapters(model)
    del optimizer, params
    step = statistics.median(times[1:])
    return {"adapter_params": injected.adapter_params, "step_s": step,
            "projected_minutes": step * PAPER_SAMPLES / 60, "peak_mb": peak / 2**20,
            "loss": float(loss)}  # fmt: skip


def table2(args: argparse.Namespace) -> None:
    import torch

    from lorabench.report.reference import paper_table
    from lorabench.report.tables.overhead import paper_setting

    device = "cpu" if args.smoke else "cuda"
    shape = SHAPES["tiny" if args.smoke else "llama-8b"]
    length, steps = (32, 1) if args.smoke else (1024, 3)
    started = time.perf_counter()
    model = random_llama(shape, device)
    paper = paper_table("overhead")
    paper["setting"] = paper["setting"].fillna("").astype(str)
    result = {"device": device_name(args.smoke), "shape": shape, "length": length,
              "build_seconds": time.perf_counter() - started, "rows": []}  # fmt: skip
    path = Path(args.out) / "part_b.json"
    write_json(path, result)
    for job in overhead_jobs():
        setting = paper_setting(job.variant, job.variant_params)
        row = {"variant": job.variant, "checkpointed": job.adapter_checkpointing,
               "setting": setting, "rank": job.rank}  # fmt: skip
        match = paper[(paper["variant"] == job.variant)
                      & (paper["adapter_checkpointing"] == job.adapter_checkpointing)
                      & (paper["setting"] == setting)]  # fmt: skip
        if len(match):
            row["paper_minutes"] = float(match["time_min"].iloc[0])
            row["paper_mb"] = float(match["memory_mb"].iloc[0])
        try:
            row.update(table2_row(model, job, length=length, steps=steps, device=device))
        except torch.OutOfMemoryError as error:
            strip_adapters(model)
            row["error"] = f"out of memory: {str(error).splitlines()[0]}"
        row["estimate_mb"] = estimated_mb(job, shape, length)
        result["rows"].append(row)
        write_json(path, result)
        print(json.dumps(row), flush=True)


def estimated_mb(job, shape: dict, length: int) -> float | None:  # noqa: ANN001
    """lorabench's own peak-memory estimate for the row (`lorabench.memory`)."""
    from lorabench.memory import estimate_peak, from_config

    model = from_config({"model_type": "llama", **shape, "tie_word_embeddings": False})
    if model is None:
        return None
    config = {**job.model_dump(mode="json"), "max_length": length}
    return estimate_peak(config, model).peak / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu_check_out"))
    parser.add_argument("--parts", default="abcd", help="which parts to run, e.g. 'ab'")
    parser.add_argument("--smoke", action="store_true", help="every part on the CPU, tiny shapes")
    parser.add_argument("--table2", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.table2:
        table2(args)
        return 0
    unknown = set(args.parts) - set(BUDGETS)
    if unknown:
        parser.error(f"unknown part(s) {''.join(sorted(unknown))}; parts are a, b, c, d")
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
