"""GSM8K problems per second: batched generation against one problem at a time.

SmolLM2-135M-Instruct (embedded) on N held-out GSM8K problems of the `gsm8k-mini` task,
prompted with the training template, greedy, the same max_new_tokens and stop sequences for
every run (so each answer ends at EOS, a stop sequence or the token limit). Batch size 1 is
the one-at-a-time baseline; "same text" counts completions identical to the baseline's.

    python benchmarks/generation_throughput.py [--n 32] [--max-new-tokens 128]
        [--batch-sizes 1,8,16,32] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from lorabench.tasks.generation import generate
from lorabench.tasks.gsm8k import Gsm8kMini, embedded_gsm8k_split
from lorabench.tasks.models import SMOLLM2, resolve_model
from lorabench.tasks.nlg import ALPACA_TEMPLATE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-sizes", default="1,8,16,32")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer, logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    path = resolve_model(SMOLLM2)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).to(args.device).eval()
    _, held_out = embedded_gsm8k_split()
    prompts = [ALPACA_TEMPLATE.format(instruction=r["question"]) for r in held_out[: args.n]]
    generate(model, tokenizer, prompts[:2], max_new_tokens=4, batch_size=2)  # warm-up

    rows, baseline = [], None
    for size in (int(s) for s in args.batch_sizes.split(",")):
        start = time.perf_counter()
        texts = generate(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens,
                         stop=Gsm8kMini.stop, batch_size=size)  # fmt: skip
        seconds = time.perf_counter() - start
        baseline = baseline or (seconds, texts)
        tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
        same = sum(a == b for a, b in zip(texts, baseline[1], strict=True))
        rows.append((size, seconds, len(prompts) / seconds, tokens / seconds,
                     baseline[0] / seconds, same))  # fmt: skip

    print(f"SmolLM2-135M-Instruct, device {args.device}, {args.threads} threads, {args.n} GSM8K "
          f"problems, greedy, max_new_tokens {args.max_new_tokens}\n")  # fmt: skip
    print("| batch | seconds | problems/s | new tokens/s | × one-at-a-time | same text |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size, seconds, problems, tokens, speedup, same in rows:
        print(f"| {size} | {seconds:.1f} | {problems:.2f} | {tokens:.0f} | {speedup:.2f} | "
              f"{same}/{len(prompts)} |")  # fmt: skip


if __name__ == "__main__":
    main()
