"""`lora-one`: hyperparameters and catalog entry, importable without torch; the layer
and its training hooks are in lorabench.variants.lora_one."""

from __future__ import annotations

from dataclasses import dataclass

from lorabench.catalog.cost import AdapterCost
from lorabench.catalog.variant import VariantInfo
from lorabench.catalog.variants._gradients import check_prepare_params, weight_gradient_sums


@dataclass(frozen=True)
class LoRAOneParams:
    """Paper's settings (line ~1273): 64 gradient estimation steps, gamma = 128."""

    steps: int = 64
    gamma: float = 128.0

    def __post_init__(self) -> None:
        check_prepare_params(self.steps, self.gamma)


VARIANT = VariantInfo(
    name="lora-one",
    params_cls=LoRAOneParams,
    family="initialization",
    equations="Eq. (104)-(106)",
    merges=True,
    summary=(
        "rsLoRA with B A initialised to the top-r SVD of the negative gradient, "
        "normalised by sigma_1 and divided by gamma; base weight untouched."
    ),
    peft=True,
    implementation="lorabench.variants.lora_one",
    cost=AdapterCost(prepare=weight_gradient_sums, prepare_backward=True),
)
