"""Adapter library: LoRA variants as drop-in nn.Linear wrappers plus a name registry."""

# Importing the variant modules registers them; keep this list in sync with new variants.
from lorabench.variants import lora, rslora  # noqa: F401
from lorabench.variants.base import (
    FAMILIES,
    AdapterLinear,
    InvalidVariantParams,
    UnknownVariantError,
    VariantSpec,
    build_params,
    get_variant,
    register,
    variant_names,
)
from lorabench.variants.inject import (
    AdapterStateError,
    InjectError,
    InjectReport,
    adapter_layers,
    adapter_state_dict,
    inject,
    load_adapter_state_dict,
    merge_adapters,
    set_adapters_enabled,
    unmerge_adapters,
)
from lorabench.variants.lora import LoRALinear, LoRAParams
from lorabench.variants.rslora import RsLoRALinear

__all__ = [
    "FAMILIES",
    "AdapterLinear",
    "AdapterStateError",
    "InjectError",
    "InjectReport",
    "InvalidVariantParams",
    "LoRALinear",
    "LoRAParams",
    "RsLoRALinear",
    "UnknownVariantError",
    "VariantSpec",
    "adapter_layers",
    "adapter_state_dict",
    "build_params",
    "get_variant",
    "inject",
    "load_adapter_state_dict",
    "merge_adapters",
    "register",
    "set_adapters_enabled",
    "unmerge_adapters",
    "variant_names",
]
