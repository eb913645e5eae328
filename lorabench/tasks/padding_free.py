"""Training batches of causal LMs without padding (the `padding_free` task param, default on).

Packed rows. A micro-batch's examples go, longest first, into the first row with room for them
(first-fit decreasing), in as few rows as rows of `ROW_TOKENS` slots need, balanced (the
narrowest width that many rows hold them at); so a micro-batch of at most `ROW_TOKENS` tokens
is one row of exactly its tokens, (1, T). Each example keeps its own `position_ids` from 0, and
the batch carries no attention mask. Given
position ids and no mask, transformers' `masking_utils.create_causal_mask` finds where the
positions restart (`find_packed_sequence_indices`) and masks attention across those boundaries,
for SDPA, eager and flex attention alike, while flash attention reads the same restarts as
variable-length sequences; rotary embeddings read the positions. So every example computes what
it computes in a padded batch, and the loss, a sum over labelled tokens divided by their count,
is unchanged. The first token of each example is given label -100, so the last token of the
example before it in the row never predicts it (in a padded batch it is never a target either).

Why rows of about `ROW_TOKENS`, not always one row: SDPA and eager attention take the packed
mask as a dense mask, so a token's attention work grows with its row's length W, not its
example's: about 4·W·d flops a layer against twice the layer's parameters for the projections,
so rows of about 2,048 add at most ~8% on Llama-3.1-8B (d = 4,096) and ~66% on SmolLM2
(d = 576; its gsm8k-mini micro-batches, about 1,500 tokens, are one row whatever the cap), and
each row's mask stays W x W. The slack first-fit leaves at row ends is what remains of the
padding (benchmarks/padding_fraction.py). A row's slack continues its last example's positions:
it comes last, so under the causal mask nothing attends to it, its labels are -100, and a row
holding a single example stays one sequence (no packed mask at all).

Support is probed, never assumed: `packing_problem` builds a one-layer random model of the same
architecture and checks that each example's logits in packed rows equal its logits alone. The
model is called with `use_cache=False` (`model_inputs`): with a cache object, transformers skips
the packed-sequence detection and attention leaks across examples (masking_utils,
`_preprocess_mask_arguments`); the probe checks the very call the loss makes.

Fallback, where the probe fails: padded rows in length groups. Each micro-batch's rows are
sorted longest first and cut into at most `MAX_GROUPS` groups, those that need the fewest padded
slots when each forward pass is charged one more row of the longest example (a pass over a few
rows uses the hardware less well than one over many); each group runs as its own forward pass,
trimmed to its longest row, and the loss sums over all groups. The micro-batch is the
trainer's, so which examples form a step is unchanged. Grouping across micro-batches was not
chosen: micro-batches are weighted by their number of examples while the loss is a mean over
each micro-batch's tokens, so regrouping the examples of a step (with gradient accumulation)
would change its gradient, and grouping across steps (Hugging Face's `group_by_length`) would
change the data order.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

IGNORE_INDEX = -100  # label of tokens that carry no loss (prompt, padding), as Hugging Face's
ROW_TOKENS = 2048  # slots a packed row holds, unless one example is longer (module docstring)
MAX_GROUPS = 4  # forward passes per micro-batch at most in the length-grouped fallback

Batch = dict[str, torch.Tensor]


def pad_rows(examples: Sequence[Mapping[str, Any]], pad_id: int) -> Batch:
    """One right-padded row per example: input_ids, attention_mask and labels (-100 on padding)."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.as_tensor(e["input_ids"])
        labels[row, :n] = torch.as_tensor(e["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pack_rows(
    examples: Sequence[Mapping[str, Any]], pad_id: int, row_tokens: int = ROW_TOKENS
) -> Batch:
    """The examples packed into rows (`first_fit`): input_ids, position_ids, labels. The batch
    is as wide as its fullest row."""
    lengths = [len(e["input_ids"]) for e in examples]
    rows = first_fit(lengths, row_tokens)
    width = max(sum(lengths[i] for i in members) for members in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for r, members in enumerate(rows):
        at = 0
        for i in members:
            n = lengths[i]
            ids[r, at : at + n] = torch.as_tensor(examples[i]["input_ids"])
            labels[r, at : at + n] = torch.as_tensor(examples[i]["labels"])
            labels[r, at] = IGNORE_INDEX  # never the target of the example before it
            positions[r, at : at + n] = torch.arange(n)
            at += n
        # Slack (if any) continues the last example's positions (see the module docstring).
        last = lengths[members[-1]]
        positions[r, at:] = torch.arange(last, last + width - at)
    return {"input_ids": ids, "position_ids": positions, "labels": labels}


def first_fit(lengths: Sequence[int], row_tokens: int = ROW_TOKENS) -> list[list[int]]:
    """Rows of example indices, as many as rows of `row_tokens` slots need and balanced: the
    narrowest width (from the mean row up, 1/64 at a time; never below the longest example) at
    which first-fit decreasing fills no more rows. Without balancing, the last row would be
    about half empty: ~8% of the slots for 64 MetaMathQA-like rows in rows of 2,048."""
    total = sum(lengths)
    count = -(-total // row_tokens)
    width = max(max(lengths), -(-total // count))
    while len(rows := _first_fit(lengths, width)) > count:
        width += -(-width // 64)
    return rows


def _first_fit(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Longest first, each into the first row of `width` with room (ties keep their order)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((r for r, free in enumerate(room) if lengths[i] <= free), None)
        if row is None:
            rows.append([])
            room.append(width)
            row = len(rows) - 1
        rows[row].append(i)
        room[row] -= lengths[i]
    return rows


def group_rows(examples: Sequence[Mapping[str, Any]], pad_id: int) -> Batch:
    """`pad_rows` of the examples longest first, with "length_groups": rows per group."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    batch = pad_rows([examples[i] for i in order], pad_id)
    lengths = [len(examples[i]["input_ids"]) for i in order]
    batch["length_groups"] = torch.tensor(length_groups(lengths), dtype=torch.long)
    return batch


def length_groups(lengths: Sequence[int], most: int = MAX_GROUPS) -> list[int]:
    """Sizes of the consecutive groups of `lengths` (longest first), at most `most`, that need
    the fewest slots, each group charged one more row of the longest; ties take fewer groups."""
    n = len(lengths)
    # best[g][j]: fewest slots for the first j rows in g groups; cut[g][j]: where the last starts.
    best = [[float("inf")] * (n + 1) for _ in range(most + 1)]
    cut = [[0] * (n + 1) for _ in range(most + 1)]
    best[0][0] = 0
    for g in range(1, most + 1):
        for j in range(1, n + 1):
            for i in range(j):
                slots = best[g - 1][i] + (j - i) * lengths[i]
                if slots < best[g][j]:
                    best[g][j], cut[g][j] = slots, i
    groups = min(range(1, most + 1), key=lambda g: (best[g][n] + g * lengths[0], g))
    sizes, j = [], n
    for g in range(groups, 0, -1):
        sizes.append(j - cut[g][j])
        j = cut[g][j]
    return [s for s in reversed(sizes) if s]


_PADDED = ("input_ids", "attention_mask", "labels")


def sub_batches(batch: Batch) -> Iterator[Batch]:
    """The parts of `batch` that run as one forward pass each: its length groups, each trimmed
    to its longest row, or the batch itself."""
    if "length_groups" not in batch:
        yield batch
        return
    start = 0
    for size in batch["length_groups"].tolist():
        part = {k: batch[k][start : start + size] for k in _PADDED}
        width = int(part["attention_mask"][0].sum())  # rows are longest first
        yield {k: v[:, :width] for k, v in part.items()}
        start += size


def model_inputs(batch: Batch) -> dict[str, Any]:
    """The model's keyword arguments for a packed or padded batch. No cache: training needs
    none, and with one transformers would not detect packed rows (module docstring)."""
    if "position_ids" in batch:
        return {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"],
                "use_cache": False}  # fmt: skip
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
            "use_cache": False}  # fmt: skip


# The probe model: one layer and small widths. Which tokens may attend to which is decided by
# the architecture's mask and position code, not by its size.
_PROBE_SIZES = {"num_hidden_layers": 1, "vocab_size": 64, "intermediate_size": 32}
_PROBE_LENGTHS = (6, 3, 2)  # in rows of 6: [6] and [3, 2, 1 slack], a boundary and slack
# Largest logit gap, relative to the largest logit, still taken for rounding. Measured on
# SmolLM2's architecture: 5e-7 packed as here; 1.4 when positions do not restart or a cache is
# passed (attention across the boundary).
PROBE_TOLERANCE = 1e-3


@functools.cache
def packing_problem(model_path: str | Path) -> str | None:
    """Why causal LMs of `model_path`'s architecture cannot take packed rows; None if they can.

    Runs a one-layer random model of the same config class (default attention implementation,
    as the tasks load theirs) on packed rows and on each example alone, in fp32 on the CPU, with
    the global RNG untouched; 20 ms for SmolLM2. Any error is a reason not to pack.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        config = AutoConfig.from_pretrained(model_path)
        for name, size in _PROBE_SIZES.items():
            if isinstance(getattr(config, name, None), int):
                setattr(config, name, min(size, getattr(config, name)))
        if isinstance(getattr(config, "layer_types", None), list):
            config.layer_types = config.layer_types[: config.num_hidden_layers]
        if (getattr(config, "pad_token_id", None) or 0) >= config.vocab_size:
            config.pad_token_id = None  # an embedding's padding index must be in the vocabulary
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(config).float().eval()
            examples = [torch.randint(config.vocab_size, (n,)) for n in _PROBE_LENGTHS]
            width = max(_PROBE_LENGTHS)
            packed = pack_rows([{"input_ids": x, "labels": x} for x in examples], 0, width)
            logits = model(**model_inputs(packed)).logits
            for r, members in enumerate(first_fit(_PROBE_LENGTHS, width)):
                at = 0
                for i in members:
                    alone = model(input_ids=examples[i][None], use_cache=False).logits[0]
                    gap = (logits[r, at : at + len(alone)] - alone).abs().max().item()
                    if gap > PROBE_TOLERANCE * alone.abs().max().item():
                        return f"an example's logits in packed rows differ from alone by {gap:.3g}"
                    at += len(alone)
    except Exception as error:  # noqa: BLE001 (any failure means: do not pack)
        return f"{type(error).__name__}: {error}"
    finally:
        logging.set_verbosity(verbosity)
    return None
