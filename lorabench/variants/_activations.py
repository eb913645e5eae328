"""Stream the inputs of every wrapped layer to a consumer, batch by batch (EVA, CorDA).

Nothing is kept between calls: each layer's input rows go to the consumer inside its forward
hook and are dropped, so a variant accumulates statistics (a covariance, an incremental SVD),
never the activations themselves.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from lorabench.variants.inject import adapter_layers

# consume(leader, rows, sequence): rows (tokens, in_features) in float32, padding dropped;
# sequence (tokens,) numbers the sequence (0..n_sequences-1) each row came from.
Consumer = Callable[[str, Tensor, Tensor], None]


def _rows(x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """(tokens, features) rows of a layer input and the sequence each row belongs to."""
    x = x.detach()
    if x.ndim == 1:
        x = x.unsqueeze(0)
    if x.ndim == 2:  # one row per sequence (e.g. the pooler's [CLS] vector)
        return x.float(), torch.arange(x.shape[0], device=x.device)
    seqs = x.reshape(-1, x.shape[-2], x.shape[-1])
    ids = torch.arange(seqs.shape[0], device=x.device).repeat_interleave(seqs.shape[1])
    rows = seqs.reshape(-1, x.shape[-1])
    if mask is not None and x.ndim == 3 and tuple(mask.shape) == tuple(x.shape[:2]):
        keep = mask.reshape(-1).bool()  # padding positions carry no data
        rows, ids = rows[keep], ids[keep]
    return rows.float(), ids


@torch.no_grad()
def stream_layer_inputs(
    model: nn.Module,
    batches: Iterable[Mapping[str, Tensor]],
    run: Callable[[Mapping[str, Tensor]], object],
    consume: Consumer,
    *,
    wanted: Callable[[str], bool] = lambda leader: True,
    after_batch: Callable[[int, dict[str, list[str]]], bool] = lambda step, groups: False,
) -> dict[str, list[str]]:
    """Run `run(batch)` for each batch with forward hooks on every adapter layer.

    Layers fed the very same tensor (query/key/value) form one group: only its first layer
    (the leader) is passed to `consume`, once per batch, if `wanted(leader)`. Adapters are
    disabled and the model is in eval mode (no dropout) while collecting, so the inputs are
    the frozen model's. `after_batch(step, groups)` (step counts from 1; groups as returned)
    returns True to stop early. Returns {leader: [every layer of its group]}, in model order;
    layers the forward never reached are left out.
    """
    layers = adapter_layers(model)
    leader_of: dict[str, str] = {}
    # id(input) -> (weak reference, leader) on the first batch: a weak reference tells the very
    # same tensor apart from a later one that reuses a freed id, without keeping it alive.
    first_pass: dict[int, tuple[weakref.ref, str]] = {}
    state = {"mask": None, "first": True}

    def make_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            if not args:  # called with a keyword input: nothing to read
                return
            x = args[0]
            if state["first"]:
                seen = first_pass.get(id(x))
                if seen is not None and seen[0]() is x and seen[1] != name:
                    leader_of[name] = seen[1]
                    return
                first_pass[id(x)] = (weakref.ref(x), name)
                leader_of.setdefault(name, name)
            elif leader_of.setdefault(name, name) != name:
                return
            if wanted(name):
                rows, ids = _rows(x, state["mask"])
                consume(name, rows, ids)

        return hook

    training = model.training
    disabled = {name: layer.disabled for name, layer in layers}
    handles = [layer.register_forward_hook(make_hook(name)) for name, layer in layers]
    try:
        model.eval()
        for _, layer in layers:
            layer.disabled = True
        for step, batch in enumerate(batches, start=1):
            state["mask"] = batch.get("attention_mask")
            run(batch)
            state["first"] = False
            first_pass.clear()
            if after_batch(step, _groups(layers, leader_of)):
                break
    finally:
        for handle in handles:
            handle.remove()
        for name, layer in layers:
            layer.disabled = disabled[name]
        model.train(training)
    return _groups(layers, leader_of)


def _groups(layers: list[tuple[str, nn.Module]], leader_of: dict[str, str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name, _ in layers:
        if name in leader_of:
            groups.setdefault(leader_of[name], []).append(name)
    return groups
