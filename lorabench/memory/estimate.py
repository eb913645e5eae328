"""Peak GPU memory of one training job, by arithmetic on its config and its model's shape.

peak = base weights in their dtype + the variant's frozen buffers
     + trainable parameters x 16 B (fp32 value, fp32 gradient, AdamW's two fp32 moments;
       + 2 B for the bf16 cast autocast keeps for backward)
     + activations kept for backward at batch x max_length (an upper bound: padding-free or
       shorter batches keep less),
or the variant's `prepare` at its peak, if higher. Transients of one layer at a time (a dense
weight gradient, an optimizer step's scratch) and the CUDA context are not counted.

Activations follow Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models" (arXiv:2205.05198, §4.1: s·b·h·(34 + 5·a·s/h) bytes per layer at 16 bit),
term by term, adapted to frozen base weights with adapters and to what PyTorch keeps:
- attention through SDPA (transformers' default): q, k, v and the output are kept, the a·s²
  scores, softmax and its dropout mask are not (eager attention would add ~a·s²·6 B a layer);
- GQA: k and v are kv_heads·head_dim wide; the MLP is I wide: SwiGLU keeps gate, act and up
  (3·I), GELU its input (I), CLIP's quick_gelu input and sigmoid (2·I);
- norm inputs in fp32 (RMSNorm upcasts, autocast runs LayerNorm in fp32); dropout masks
  (1 B) only where the config has hidden dropout (BERT/RoBERTa);
- a frozen linear layer keeps no input: a layer's input is counted only when an adapter wraps
  it: once per input tensor under fp32, once per adapter under bf16, where each adapter keeps
  its own cast of it; what the adapter itself keeps is the variant's declared formula
  (`catalog.cost.AdapterCost.activations`);
- under bf16 autocast an fp32 base's linear weights are cast per call, and each cast is kept
  for the input's gradient: 2 B per linear weight (one layer's worth with --grad-ckpt);
- a causal LM's logits: tokens·vocab·(c + 8) B (the logits in the compute dtype c, their fp32
  log-probabilities for the loss and the fp32 gradient).
--grad-ckpt (transformers' per-block checkpointing) keeps each block's input and recomputes
one block at a time; `adapter_checkpointing` (the paper's †) recomputes the adapter path,
keeping only its input. Both are refused or useless where noted (`activations_ckpt` None).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lorabench.catalog.cost import AdapterCost, Call, Kept, SiteShape, input_group
from lorabench.catalog.tasks.glue import SPECS, task_name
from lorabench.catalog.tasks.vision import IC_DATASETS
from lorabench.catalog.variant import build_params, get_variant_info
from lorabench.memory.layers import Linear, linear_layers, wrapped
from lorabench.memory.shapes import SIXTEEN_BIT, ModelShape

ADAM_BYTES = 4 + 4 + 8  # fp32 parameter, gradient, exp_avg and exp_avg_sq
BBC_NEWS_CLASSES = 5  # business, entertainment, politics, sport, tech (tasks.embedded's data)
_CLASSES = {task_name(spec): spec.num_labels for spec in SPECS}
_IMAGE_CLASSES = {dataset.task: dataset.classes for dataset in IC_DATASETS}


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak GPU memory of one training job by where it goes, in bytes."""

    base: int  # frozen base weights in their dtype
    buffers: int  # the variant's frozen buffers (random bases, initial factors, statistics)
    trainable_params: int  # adapter parameters (shared ones once) and a new task head
    trainable: int  # their values, gradients and AdamW moments (and bf16 casts)
    activations: int  # kept for backward in one training step, frozen-weight casts included
    activations_ckpt: int | None  # the same under --grad-ckpt; None: the model refuses it
    prepare: int = 0  # the variant's prepare at its peak (gradient sums, covariances); 0: none

    @property
    def resident(self) -> int:
        return self.base + self.buffers + self.trainable

    @property
    def peak(self) -> int:
        return max(self.resident + self.activations, self.prepare)

    @property
    def peak_ckpt(self) -> int | None:
        if self.activations_ckpt is None:
            return None
        # prepare runs before the trainer switches checkpointing on
        return max(self.resident + self.activations_ckpt, self.prepare)


@dataclass(frozen=True)
class Bytes:
    """Bytes per element of a job's tensors."""

    base: int  # frozen weights
    compute: int  # activations: 2 under bf16 autocast or a 16-bit base, else 4
    stream: int  # the residual stream between blocks (the base's dtype)

    def of(self, kept: Kept) -> int:
        return kept.compute * self.compute + kept.fp32 * 4 + kept.base * self.base


def job_bytes(job: Mapping[str, Any], shape: ModelShape) -> Bytes:
    setting = job.get("base_dtype", "fp32")
    sixteen = setting == "bf16" or (setting == "auto" and shape.dtype in SIXTEEN_BIT)
    base = 2 if sixteen else 4
    compute = 2 if sixteen or job.get("precision") == "bf16" else 4
    return Bytes(base=base, compute=compute, stream=base)


def head_params(job: Mapping[str, Any], shape: ModelShape) -> int:
    """A new classification head trained in full beside the adapters (GLUE, bbc-news, IC's
    linear head); 0 where the task has none."""
    task, h = job["task"], shape.hidden
    if task in _IMAGE_CLASSES:
        linear = (job.get("task_params") or {}).get("head") == "linear"
        return h * _IMAGE_CLASSES[task] + _IMAGE_CLASSES[task] if linear else 0
    classes = _CLASSES.get(task, BBC_NEWS_CLASSES if task == "bbc-news" else 0)
    if not classes or shape.kind != "encoder":
        return 0
    if shape.model_type == "bert":  # BertForSequenceClassification: one linear layer
        return h * classes + classes
    return h * h + h + h * classes + classes  # RobertaClassificationHead: dense + out_proj


@dataclass(frozen=True)
class _Context:
    """What the per-layer arithmetic of one job reads."""

    job: Mapping[str, Any]
    cost: AdapterCost
    hyper: Any
    rank: int
    size: Bytes
    sites: tuple[SiteShape, ...]
    batch: int
    tokens: int


def estimate_peak(job: Mapping[str, Any], shape: ModelShape) -> MemoryEstimate:
    """The estimate for `job` (a JobConfig as a dict; `base_dtype` defaults to fp32) on a
    model of `shape`."""
    info = get_variant_info(job["variant"])
    hyper = build_params(job["variant"], job.get("variant_params") or {})
    cost, rank = info.cost, int(job.get("rank", 8))
    size = job_bytes(job, shape)
    layers = wrapped(shape, job["targets"])
    sites = tuple(layer.site for layer in layers)
    adapter = sum(cost.params(s.in_features, s.out_features, rank, hyper) for s in sites)
    adapter += cost.shared(sites, rank, hyper) if sites else 0
    trainable_params = adapter + head_params(job, shape)
    per_param = ADAM_BYTES + (2 if size.compute == 2 else 0)
    buffers = size.of(cost.frozen(sites, rank, hyper)) if sites else 0
    base = shape.parameters * size.base

    batch = int(job["batch_size"])
    tokens = batch * shape.sequence(int(job["max_length"]))
    context = _Context(job, cost, hyper, rank, size, sites, batch, tokens)
    adapters = _adapter_bytes(context, layers)
    block = _block_bytes(shape, size, tokens)
    casts = _weight_casts(shape, size)
    outside = _outside_bytes(shape, size, tokens) + adapters.get(None, 0) + casts.get(None, 0)
    in_blocks = [b for b in adapters if b is not None]
    activations = (shape.layers * block + sum(adapters[b] for b in in_blocks)
                   + sum(v for b, v in casts.items() if b is not None) + outside)  # fmt: skip
    activations_ckpt = None
    if shape.kind != "vision":  # tasks.vision's classifiers do not support checkpointing
        heaviest = max((adapters.get(b, 0) + casts.get(b, 0) for b in range(shape.layers)),
                       default=0)  # fmt: skip
        inputs = shape.layers * tokens * shape.hidden * size.stream
        activations_ckpt = inputs + block + heaviest + outside

    prepare = 0
    held = cost.prepare(sites, rank, hyper) if sites else 0
    if held:
        # Before training: no gradients or optimizer state yet; a gradient-driven prepare
        # runs backward passes, so training-size activations are alive meanwhile.
        alive = activations if cost.prepare_backward else 0
        prepare = base + buffers + trainable_params * 4 + held * 4 + alive
    return MemoryEstimate(base=base, buffers=buffers, trainable_params=trainable_params,
                          trainable=trainable_params * per_param, activations=activations,
                          activations_ckpt=activations_ckpt, prepare=prepare)  # fmt: skip


def _adapter_bytes(context: _Context, layers: Sequence[Linear]) -> dict[int | None, int]:
    """Per block (None: outside the blocks): the wrapped layers' inputs and what the adapters
    keep, in bytes."""
    c, size = context.size.compute, context.size
    dropout = float(context.job.get("dropout", 0.0))
    recompute = bool(context.job.get("adapter_checkpointing", False))
    found: dict[int | None, int] = defaultdict(int)
    counted: set[str] = set()
    for layer in layers:
        rows = context.batch if layer.per_sequence else context.tokens
        call = Call(site=layer.site, tokens=rows, rank=context.rank, params=context.hyper,
                    sites=context.sites, dropout=dropout)  # fmt: skip
        group = input_group(layer.site)
        if recompute:  # only the checkpointed function's input is kept, once per tensor
            if group not in counted:
                counted.add(group)
                found[layer.block] += rows * layer.in_features * c
            continue
        if context.cost.saves_input(call):
            if c == 2:  # each adapter keeps its own bf16 cast of the input
                found[layer.block] += rows * layer.in_features * c
            elif group not in counted:  # fp32: the input tensor itself, shared
                counted.add(group)
                found[layer.block] += rows * layer.in_features * c
        if dropout > 0:  # the adapter input's dropout mask
            found[layer.block] += rows * layer.in_features
        found[layer.block] += size.of(context.cost.activations(call))
    return dict(found)


def _block_bytes(shape: ModelShape, size: Bytes, tokens: int) -> int:
    """What one block keeps besides wrapped layers' inputs and adapters (the module docstring)."""
    c, h, i = size.compute, shape.hidden, shape.intermediate
    norms = 2 * h * 4
    attention = (2 * shape.q_width + 2 * shape.kv_width) * c
    # SwiGLU keeps gate, act and up; GELU its input; quick_gelu its input and sigmoid.
    widths = 3 if shape.gated_mlp else 2 if shape.activation == "quick_gelu" else 1
    mlp = widths * i * c
    masks = 2 * h if shape.dropout > 0 else 0
    return tokens * (norms + attention + mlp + masks)


def _outside_bytes(shape: ModelShape, size: Bytes, tokens: int) -> int:
    """The final norm and the logits' loss (causal LMs); the embedding LayerNorm (encoders)."""
    h = shape.hidden
    if shape.kind == "decoder":
        return tokens * h * 4 + tokens * shape.vocab * (size.compute + 8)
    masks = h if shape.dropout > 0 else 0
    return tokens * (h * 4 + masks)


def _weight_casts(shape: ModelShape, size: Bytes) -> dict[int | None, int]:
    """bf16 casts of an fp32 base's linear weights that autocast hands to each matmul, kept for
    the input's gradient, per block."""
    if not (size.base == 4 and size.compute == 2):
        return {}
    casts: dict[int | None, int] = defaultdict(int)
    for layer in linear_layers(shape):
        casts[layer.block] += layer.in_features * layer.out_features * 2
    return dict(casts)
