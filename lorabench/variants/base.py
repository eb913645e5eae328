"""Adapter layer base class, variant specs and the registry of variant implementations.

What a variant declares (name, family, hyperparameters) is in `lorabench.catalog.variant`, which
loads without torch; a `VariantSpec` adds the layer class and training hooks to that `info`."""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from lorabench.catalog.variant import FAMILIES as FAMILIES
from lorabench.catalog.variant import NoParams as NoParams
from lorabench.catalog.variant import VariantInfo, get_variant_info
from lorabench.catalog.variant import build_params as build_params
from lorabench.catalog.variant import variant_names as variant_names
from lorabench.errors import InvalidVariantParams as InvalidVariantParams
from lorabench.errors import UnknownVariantError as UnknownVariantError


@dataclass(frozen=True)
class Site:
    """One nn.Linear a variant wraps. `kind` (the last name component, e.g. "query") groups
    "modules of the same type", which RaSA and DenseLoRA share parameters across."""

    name: str
    kind: str
    in_features: int
    out_features: int


class SharedParameters(nn.Module):
    """Base for a sharing variant's `make_shared` module, registered once on the model's root.

    It computes nothing; `forward` is the identity because a root that calls every child in
    turn (nn.Sequential) calls this one too.
    """

    def forward(self, x: Any) -> Any:
        return x


class AdapterLinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update (Eq. (1))."""

    variant_name: ClassVar[str] = "abstract"
    params_cls: ClassVar[type] = NoParams
    # False for variants whose method prescribes a non-zero initial update; each such variant
    # tests its own initial delta explicitly.
    zero_init: ClassVar[bool] = True
    # True for variants that rewrite the frozen weight (PiSSA's residual, ReLoRA's merges):
    # checkpoints then carry base.weight so a resumed job continues from the same weight.
    modifies_base: ClassVar[bool] = False

    def __init__(
        self,
        base: nn.Linear,
        *,
        rank: int,
        alpha: float,
        dropout: float = 0.0,
        params: Any = None,
        shared: nn.Module | None = None,
        site: Site | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"{type(self).__name__} wraps nn.Linear, got {type(base).__name__}")
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise ValueError(f"rank must be a positive int, got {rank!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if params is None:
            params = self.params_cls()
        if not isinstance(params, self.params_cls):
            raise TypeError(
                f"{type(self).__name__} expects params of type {self.params_cls.__name__}, "
                f"got {type(params).__name__}"
            )
        self.base = base
        base.requires_grad_(False)
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.rank = rank
        self.alpha = float(alpha)
        self.params = params
        # Eq. (134) applies dropout to the adapter input only, never to the frozen path.
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.disabled = False
        # Non-persistent: follows .to() but stays out of state dicts and checkpoints.
        self.register_buffer("merged_delta", None, persistent=False)
        # Recompute the adapter path in backward instead of storing its activations.
        self.checkpoint_adapter = False
        self.site = site or Site("", "", base.in_features, base.out_features)
        if shared is None:
            # Standalone layer of a sharing variant: it is its own group and owns the module.
            shared = type(self).make_shared(
                [self.site], rank=rank, alpha=self.alpha, params=params,
                device=base.weight.device, dtype=adapter_dtype(base),
            )  # fmt: skip
            if shared is not None:
                self.own_shared = shared
        else:
            # Registered once on the model by inject(); a plain reference here keeps the
            # optimizer, state_dict and parameter counts from seeing it once per layer.
            object.__setattr__(self, "_shared_ref", shared)

    # --- to be provided by subclasses -------------------------------------------------------
    @property
    def scaling(self) -> float:
        raise NotImplementedError

    def reset_adapter_parameters(self) -> None:
        raise NotImplementedError

    def delta_weight(self) -> Tensor:
        """Dense (out_features, in_features) update that merge() adds to the base weight."""
        raise NotImplementedError

    def adapter_forward(self, x: Tensor) -> Tensor:
        # Fallback only: materialising the dense delta costs O(out*in) per call.
        delta = self.delta_weight()
        return F.linear(x.to(delta.dtype), delta)

    @classmethod
    def expected_param_count(
        cls, in_features: int, out_features: int, rank: int, params: Any = None
    ) -> int:
        """Closed-form number of trainable parameters one wrapped layer adds (not shared ones)."""
        raise NotImplementedError

    @classmethod
    def make_shared(
        cls,
        sites: list[Site],
        *,
        rank: int,
        alpha: float,
        params: Any,
        device: torch.device,
        dtype: torch.dtype,
    ) -> nn.Module | None:
        """Parameters shared by all wrapped layers (RaSA, VeRA, RandLoRA ...); None if none."""
        return None

    @classmethod
    def shared_param_count(cls, sites: list[Site], rank: int, params: Any = None) -> int:
        """Closed-form number of trainable shared parameters for these sites."""
        return 0

    @property
    def shared(self) -> nn.Module | None:
        own = self._modules.get("own_shared")
        return own if own is not None else self.__dict__.get("_shared_ref")

    # --- shared behaviour -------------------------------------------------------------------
    @property
    def weight(self) -> Tensor:
        # Model code sometimes reads layer.weight (e.g. for its dtype); point it at the base.
        return self.base.weight

    @property
    def bias(self) -> Tensor | None:
        return self.base.bias

    def adapter_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Parameters owned by the adapter itself (everything except the frozen base)."""
        return [(n, p) for n, p in self.named_parameters() if not n.startswith("base.")]

    def forward(self, x: Tensor) -> Tensor:
        if self.merged and self.disabled:
            # The base output without unmerging: take the merged delta back out of the weight.
            weight = self.base.weight
            return F.linear(x, (weight - self.merged_delta).to(weight.dtype), self.base.bias)
        if self.merged or self.disabled:
            return self.base(x)
        return self.adapted_forward(x)

    def adapted_forward(self, x: Tensor) -> Tensor:
        """Output of the adapted layer. Override when the update is not additive (DoRA)."""
        out = self.base(x)
        return out + self.run_adapter(self.adapter_forward, self.dropout(x)).to(out.dtype)

    def run_adapter(self, fn: Callable[..., Tensor], *args: Tensor) -> Tensor:
        """Call `fn`, under activation checkpointing when `checkpoint_adapter` is set."""
        if self.checkpoint_adapter and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            raise ValueError(f"{self.variant_name} adapter is already merged; call unmerge() first")
        weight = self.base.weight
        # Kept: once merged, base.weight no longer holds W, so updates that depend on W
        # (DoRA, HiRA, DeLoRA) could not be recomputed for unmerge().
        delta = self.delta_weight()
        if weight.dtype == adapter_dtype(self.base):
            self.merged_delta = delta.to(weight.dtype)
            weight.add_(self.merged_delta)
        else:  # 16-bit base: W + delta formed in fp32 and rounded once
            merged = (weight.to(delta.dtype) + delta).to(weight.dtype)
            # The change actually made, in fp32, where the difference of two bf16 numbers is
            # exact: unmerge() gives W back bit for bit (a merged layer holds this fp32 copy).
            self.merged_delta = merged.to(delta.dtype) - weight.to(delta.dtype)
            weight.copy_(merged)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            raise ValueError(f"{self.variant_name} adapter is not merged; nothing to unmerge")
        self.base.weight.sub_(self.merged_delta)
        self.merged_delta = None
        self.merged = False

    def extra_repr(self) -> str:
        return (
            f"variant={self.variant_name}, rank={self.rank}, alpha={self.alpha:g}, "
            f"scaling={self.scaling:.4g}, merged={self.merged}, disabled={self.disabled}"
        )


Hook = Callable[..., Any]


def adapter_dtype(base: nn.Linear) -> torch.dtype:
    """The dtype of a variant's trainable parameters: fp32 master weights on a 16-bit base
    (optimizer updates far below a bf16 ulp would otherwise round away), else the base's own."""
    return torch.promote_types(base.weight.dtype, torch.float32)


def adapter_factory(base: nn.Linear) -> dict[str, Any]:
    """`device=` and `dtype=` for a variant's new parameters on `base`."""
    return {"device": base.weight.device, "dtype": adapter_dtype(base)}


@torch.no_grad()
def init_lora_factors(lora_a: Tensor, lora_b: Tensor) -> None:
    """Eq. (88): A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming_uniform_(a=sqrt(5)), so seeds
    line up with it) and B = 0, which makes a freshly wrapped layer equal to its base."""
    bound = 1.0 / math.sqrt(lora_a.shape[1])
    lora_a.uniform_(-bound, bound)
    lora_b.zero_()


@dataclass(frozen=True)
class PrepareContext:
    """What a data-driven initialisation gets: the injected model and the job's own data."""

    model: nn.Module
    # batches(n) yields n training batches (on the device), the same ones on every run.
    batches: Callable[[int], Iterator[dict[str, Tensor]]]
    loss: Callable[[nn.Module, dict[str, Tensor]], Tensor]
    params: Any
    device: torch.device


@dataclass
class StepContext:
    """What on_step gets, after the optimizer stepped and before gradients are cleared."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: int  # optimizer steps done, this one included
    total_steps: int
    params: Any


@dataclass(frozen=True)
class PeftSettings:
    """What a PEFT config needs: exact module names and our hyperparameters."""

    targets: list[str]
    rank: int
    alpha: float
    dropout: float
    params: Any
    modules_to_save: list[str]
    # Rank of each wrapped layer where a variant allocates ranks per layer (EVA).
    ranks: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class PeftExport:
    """How a variant maps onto PEFT: the config, and the weight copy for one wrapped layer
    (ours -> PEFT's layer for the adapter named "default")."""

    make_config: Callable[[PeftSettings], Any]
    copy_weights: Callable[[AdapterLinear, nn.Module], None]


PrepareHook = Callable[[PrepareContext], dict[str, Any]]
RestoreHook = Callable[[nn.Module, dict[str, Any], Any], None]
ParamGroupsHook = Callable[[nn.Module, float, Any], list[dict[str, Any]]]
StepHook = Callable[[StepContext], None]
LrMultiplierHook = Callable[[int, int, Any], float]
ExtraLossHook = Callable[[nn.Module, Any], Tensor | None]
ReportHook = Callable[[nn.Module, Any], dict[str, float]]


@dataclass(frozen=True)
class VariantSpec:
    """How the benchmark runs one LoRA variant: its declaration (`info`, from the catalog), the
    layer class and the training hooks. The declared fields read through: spec.name, .family,
    .params_cls, .equations, .merges, .summary, .notes, .peft."""

    info: VariantInfo
    layer_cls: type[AdapterLinear]
    peft_export: PeftExport | None = None
    # Training hooks, called by the trainer generically (see PrepareContext, StepContext):
    # prepare(ctx) -> state dict: data-driven init before training; its state is saved, and
    #   restore(model, state, params) re-applies it on resume instead of redoing prepare.
    prepare: PrepareHook | None = None
    restore: RestoreHook | None = None
    # param_groups(model, lr, params) -> optimizer groups covering every trainable parameter.
    param_groups: ParamGroupsHook | None = None
    # on_step(ctx) after each optimizer step (gradients still present).
    on_step: StepHook | None = None
    # lr_multiplier(step, total_steps, params) scales the job's schedule (ReLoRA's re-warm-up).
    lr_multiplier: LrMultiplierHook | None = None
    # extra_loss(model, params) -> tensor added to the task loss (regularisers, MoE balancing).
    extra_loss: ExtraLossHook | None = None
    # report(model, params) -> scalars stored with the job's results (e.g. final ranks).
    report: ReportHook | None = None

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def params_cls(self) -> type:
        return self.info.params_cls

    @property
    def family(self) -> str:
        return self.info.family

    @property
    def equations(self) -> str:
        return self.info.equations

    @property
    def merges(self) -> bool:
        return self.info.merges

    @property
    def summary(self) -> str:
        return self.info.summary

    @property
    def notes(self) -> str:
        return self.info.notes

    @property
    def peft(self) -> bool:
        """PEFT implements this variant, and we can export to it."""
        return self.info.peft

    def __post_init__(self) -> None:
        if not isinstance(self.info, VariantInfo):
            raise TypeError(f"info must be a VariantInfo, got {type(self.info).__name__}")
        if (self.prepare is None) != (self.restore is None):
            raise ValueError(f"variant {self.name!r}: prepare and restore come together")
        if self.info.peft != (self.peft_export is not None):
            has = "has a" if self.peft_export is not None else "has no"
            raise ValueError(
                f"variant {self.name!r}: info.peft is {self.info.peft} but the spec {has} "
                "peft_export"
            )
        if self.params_cls is not self.layer_cls.params_cls:
            raise ValueError(
                f"variant {self.name!r}: params_cls {self.params_cls.__name__} differs from "
                f"{self.layer_cls.__name__}.params_cls {self.layer_cls.params_cls.__name__}"
            )
        if self.layer_cls.variant_name != self.name:
            raise ValueError(
                f"variant {self.name!r}: {self.layer_cls.__name__}.variant_name is "
                f"{self.layer_cls.variant_name!r}"
            )


# The only module-level mutable state: filled once at import by the variant modules.
_REGISTRY: dict[str, VariantSpec] = {}


def register(spec: VariantSpec) -> VariantSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"variant {spec.name!r} is already registered")
    if get_variant_info(spec.name) is not spec.info:
        raise ValueError(
            f"variant {spec.name!r}: its info is not the catalog's VARIANT "
            f"(lorabench.catalog.variants)"
        )
    _REGISTRY[spec.name] = spec
    return spec


def get_variant(name: str) -> VariantSpec:
    """The registered implementation of `name`; UnknownVariantError if no variant has it."""
    spec = _REGISTRY.get(name)
    if spec is None:
        info = get_variant_info(name)  # raises UnknownVariantError for an undeclared name
        importlib.import_module(info.implementation)
        spec = _REGISTRY.get(name)
        if spec is None:
            raise ValueError(f"{info.implementation} does not register variant {name!r}")
    return spec
