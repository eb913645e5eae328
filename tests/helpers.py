"""Shared test helpers (imported by the test modules; pytest puts tests/ on sys.path)."""

import torch
from torch import nn

from lorabench.variants import PrepareContext, adapter_layers, adapter_parameters


@torch.no_grad()
def randomise(model: nn.Module, seed: int = 2, scale: float = 0.3) -> None:
    """Perturb every adapter parameter (shared ones too) so the update is far from its init."""
    gen = torch.Generator().manual_seed(seed)
    params = adapter_parameters(model) if adapter_layers(model) else list(model.parameters())
    for p in params:
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
        p.add_(scale * noise.to(p.dtype))


def prepare_context(model: nn.Module, batches: list, loss, params) -> PrepareContext:  # noqa: ANN001
    """A PrepareContext over fixed batches, cycled like the trainer's, on the CPU."""

    def take(n: int):  # noqa: ANN202
        for i in range(n):
            yield batches[i % len(batches)]

    return PrepareContext(model, take, loss, params, torch.device("cpu"))


def linear_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """L = sum(T * (X W^T)), so dL/dW = T^T X: a loss whose weight gradient is known exactly."""
    return (model(batch["x"]) * batch["t"]).sum()
