"""The nn.Linear layers of a model shape, named as transformers names them, and which of them a
job's `targets` wrap (the same matching rule as `lorabench.variants.inject`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from lorabench.catalog.cost import SiteShape
from lorabench.memory.shapes import ModelShape


@dataclass(frozen=True)
class Linear:
    """One linear layer of the model."""

    name: str
    in_features: int
    out_features: int
    block: int | None  # the transformer block it sits in; None outside the blocks
    per_sequence: bool = False  # sees one row per example (pooler, projection), not every token

    @property
    def site(self) -> SiteShape:
        return SiteShape(self.name, self.name.rpartition(".")[2], self.in_features,
                         self.out_features)  # fmt: skip


def linear_layers(shape: ModelShape) -> list[Linear]:
    """Every linear layer of the task's model in module order, new task heads left out."""
    h, i, q, kv = shape.hidden, shape.intermediate, shape.q_width, shape.kv_width
    layers: list[Linear] = []
    for n in range(shape.layers):
        if shape.kind == "decoder":
            p = f"model.layers.{n}"
            sizes = [(f"{p}.self_attn.q_proj", h, q), (f"{p}.self_attn.k_proj", h, kv),
                     (f"{p}.self_attn.v_proj", h, kv), (f"{p}.self_attn.o_proj", q, h),
                     (f"{p}.mlp.gate_proj", h, i), (f"{p}.mlp.up_proj", h, i),
                     (f"{p}.mlp.down_proj", i, h)]  # fmt: skip
        elif shape.kind == "encoder":
            p = f"{'bert' if shape.model_type == 'bert' else 'roberta'}.encoder.layer.{n}"
            sizes = [(f"{p}.attention.self.query", h, h), (f"{p}.attention.self.key", h, h),
                     (f"{p}.attention.self.value", h, h), (f"{p}.attention.output.dense", h, h),
                     (f"{p}.intermediate.dense", h, i), (f"{p}.output.dense", i, h)]  # fmt: skip
        else:
            p = f"vision_model.encoder.layers.{n}"
            # CLIPAttention defines k, v, q, then out.
            sizes = [(f"{p}.self_attn.k_proj", h, h), (f"{p}.self_attn.v_proj", h, h),
                     (f"{p}.self_attn.q_proj", h, h), (f"{p}.self_attn.out_proj", h, h),
                     (f"{p}.mlp.fc1", h, i), (f"{p}.mlp.fc2", i, h)]  # fmt: skip
        layers += [Linear(name, a, b, n) for name, a, b in sizes]
    if shape.kind == "decoder":
        layers.append(Linear("lm_head", h, shape.vocab, None))
    elif shape.kind == "encoder" and shape.model_type == "bert":
        layers.append(Linear("bert.pooler.dense", h, h, None, per_sequence=True))
    elif shape.kind == "vision":
        layers.append(Linear("visual_projection", h, shape.projection, None, per_sequence=True))
    return layers


def matches(name: str, pattern: str) -> bool:
    """`inject`'s rule: a dotted pattern globs the full name, any other the last component."""
    if "." in pattern:
        return fnmatchcase(name, pattern)
    return fnmatchcase(name.rpartition(".")[2], pattern)


def wrapped(shape: ModelShape, targets: Sequence[str]) -> list[Linear]:
    """The layers `targets` wrap, in module order."""
    return [layer for layer in linear_layers(shape)
            if any(matches(layer.name, pattern) for pattern in targets)]  # fmt: skip
