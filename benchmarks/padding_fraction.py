"""Padding in NLG training batches: padded rows, packed rows (padding-free) and the
length-grouped fallback (`lorabench.tasks.padding_free`).

For each micro-batch of one epoch (the trainer's order, `train.step.epoch_order`) it counts the
token slots each layout computes and reports the padded fraction, 1 - real tokens / slots:
padded = batch x longest; packed = the slots of `pack_rows`'s batch (first-fit decreasing into
rows of `--row-tokens`, default `ROW_TOKENS`, or the longest example if longer; the batch as
wide as its fullest row); grouped = the sum over length groups of rows x the group's longest.

Two length distributions, both tokenised with SmolLM2's tokenizer and the Alpaca template:

- gsm8k-mini: its training rows at the task's defaults (train_size 128, batch 8, max_length
  320), and its whole training pool (the 900 rows select leaves) at the same batch and length.
- MetaMathQA-like, at the paper's NLG setting (batch 64, max_length 1024). Composition from the
  MetaMath paper (Yu et al., 2023, arXiv:2309.12284, Table 1): 240K of the 395K rows come from
  GSM8K questions, 155K from MATH. GSM8K-derived rows take the lengths of gsm8k-mini's 1,000
  embedded GSM8K rows (reference solutions; MetaMathQA's are GPT-3.5 rewrites of the same
  problems). No token-length statistics of the MATH-derived rows were found to cite, so their
  lengths are the GSM8K lengths times a factor, reported at 1.0, 1.5 and 2.0: an assumption,
  shown as a range, not a measurement.

    python benchmarks/padding_fraction.py [--seed 0] [--row-tokens 2048] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Sequence

from lorabench.tasks import TaskSettings, build_task, get_task_info
from lorabench.tasks.padding_free import ROW_TOKENS, first_fit, length_groups
from lorabench.train.step import epoch_order

METAMATH_GSM8K, METAMATH_MATH = 240_000, 155_000  # MetaMath paper, Table 1
MATH_FACTORS = (1.0, 1.5, 2.0)
PAPER_BATCH, PAPER_LENGTH, PAPER_ROWS = 64, 1024, 64 * 200


def slots(lengths: Sequence[int], row_tokens: int) -> dict[str, int]:
    """Token slots one micro-batch computes in each layout, and its real tokens."""
    longest = max(lengths)
    rows = first_fit(lengths, row_tokens)
    fullest = max(sum(lengths[i] for i in row) for row in rows)
    ordered = sorted(lengths, reverse=True)
    grouped, start = 0, 0
    for size in length_groups(ordered):
        grouped += size * ordered[start]
        start += size
    return {"real": sum(lengths), "padded": len(lengths) * longest,
            "packed": len(rows) * fullest, "grouped": grouped}  # fmt: skip


def epoch(lengths: Sequence[int], batch: int, seed: int, row_tokens: int) -> dict[str, float]:
    """Padded fraction of each layout over one epoch of micro-batches, and rows per packed batch."""
    order = epoch_order(len(lengths), seed, 0)
    total = {"real": 0, "padded": 0, "packed": 0, "grouped": 0}
    packed_rows = 0
    for start in range(0, len(order), batch):
        part = [lengths[i] for i in order[start : start + batch]]
        for key, value in slots(part, row_tokens).items():
            total[key] += value
        packed_rows += len(first_fit(part, row_tokens))
    batches = -(-len(order) // batch)
    result = {f"{k}_padding": 1 - total["real"] / total[k] for k in ("padded", "packed", "grouped")}
    return {**result, "rows": len(lengths), "mean_length": total["real"] / len(lengths),
            "packed_rows_per_batch": packed_rows / batches}  # fmt: skip


def gsm8k_mini_lengths(max_length: int, train_size: int | None, *, select_split: bool = True,
                       seed: int = 0) -> list[int]:  # fmt: skip
    """Token counts of gsm8k-mini's training rows (select_split off: all 1,000 rows)."""
    info = get_task_info("gsm8k-mini")
    settings = TaskSettings(model=info.defaults.model, max_length=max_length, seed=seed,
                            train_size=train_size, eval_size=info.defaults.eval_size,
                            params=info.params_cls(), select_split=select_split)  # fmt: skip
    return [len(e["input_ids"]) for e in build_task("gsm8k-mini", settings).load("train")]


def metamath_like(gsm8k: Sequence[int], factor: float, rows: int, seed: int) -> list[int]:
    """`rows` lengths: GSM8K-derived with MetaMathQA's share, else a GSM8K length x factor."""
    draw = random.Random(seed)
    share = METAMATH_GSM8K / (METAMATH_GSM8K + METAMATH_MATH)
    out = []
    for _ in range(rows):
        length = draw.choice(gsm8k)
        if draw.random() >= share:
            length = round(length * factor)
        out.append(min(length, PAPER_LENGTH))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--row-tokens",
        type=int,
        default=ROW_TOKENS,
        help="slots of a packed row (0: the micro-batch's longest example)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = args.row_tokens
    defaults = get_task_info("gsm8k-mini").defaults
    cases = {
        "gsm8k-mini train (128 rows, batch 8, max_length 320)": epoch(
            gsm8k_mini_lengths(defaults.max_length, defaults.train_size, seed=args.seed),
            defaults.batch_size, args.seed, rows),
        "gsm8k-mini pool (all rows, batch 8, max_length 320)": epoch(
            gsm8k_mini_lengths(defaults.max_length, None), defaults.batch_size, args.seed, rows),
    }  # fmt: skip
    untruncated = gsm8k_mini_lengths(100_000, None, select_split=False)
    for factor in MATH_FACTORS:
        lengths = metamath_like(untruncated, factor, PAPER_ROWS, args.seed)
        name = f"MetaMathQA-like, MATH rows x{factor:g} (batch 64, max_length 1024)"
        cases[name] = epoch(lengths, PAPER_BATCH, args.seed, rows)
    if args.json:
        print(json.dumps(cases, indent=2))
        return
    print("| lengths | rows | mean tokens | padded | packed (padding-free) | grouped (fallback) "
          "| packed rows / batch |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in cases.items():
        print(f"| {name} | {r['rows']} | {r['mean_length']:.0f} | {r['padded_padding']:.1%} | "
              f"{r['packed_padding']:.1%} | {r['grouped_padding']:.1%} | "
              f"{r['packed_rows_per_batch']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
