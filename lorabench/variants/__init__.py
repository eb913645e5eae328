"""Adapter library: LoRA variants as drop-in nn.Linear wrappers plus a name registry."""

import importlib
import pkgutil

from lorabench.variants.base import (
    FAMILIES,
    AdapterLinear,
    InvalidVariantParams,
    PeftExport,
    PeftSettings,
    PrepareContext,
    Site,
    StepContext,
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
    adapter_extra_state,
    adapter_layers,
    adapter_parameters,
    adapter_state_dict,
    inject,
    load_adapter_extra_state,
    load_adapter_state_dict,
    merge_adapters,
    set_adapters_enabled,
    unmerge_adapters,
    unwrap_adapters,
)
from lorabench.variants.lora import LoRALinear, LoRAParams
from lorabench.variants.rslora import RsLoRALinear

# Every variant module registers itself on import; a new file in this folder is picked up.
_INFRASTRUCTURE = {"base", "inject", "peft_export"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _INFRASTRUCTURE and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "FAMILIES",
    "AdapterLinear",
    "AdapterStateError",
    "PeftExport",
    "PeftSettings",
    "PrepareContext",
    "StepContext",
    "Site",
    "InjectError",
    "InjectReport",
    "InvalidVariantParams",
    "LoRALinear",
    "LoRAParams",
    "RsLoRALinear",
    "UnknownVariantError",
    "VariantSpec",
    "adapter_extra_state",
    "adapter_layers",
    "adapter_parameters",
    "adapter_state_dict",
    "build_params",
    "get_variant",
    "inject",
    "load_adapter_extra_state",
    "load_adapter_state_dict",
    "merge_adapters",
    "register",
    "set_adapters_enabled",
    "unmerge_adapters",
    "unwrap_adapters",
    "variant_names",
]
