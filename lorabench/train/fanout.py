"""Packed evaluation: the K jobs of a pack are scored in one pass over a K-times-wider batch.

Two pieces, both invisible to the task's own `evaluate`:

- Routing. Every module that holds trainable tensors (adapter layers, a new head) is swapped,
  for the duration of the evaluation, for a router that views its input as K slices of the
  batch and runs the module on slice k with job k's tensors, all K at once under
  `torch.func.vmap` (batched matmuls; the frozen weight sees the K*B rows as one matmul).
  Everything between these modules (attention, norms, the KV cache) works row by row, so a
  K*B batch of K copies gives each copy exactly its own job's activations.
- Replay. `evaluate` runs once per job against a stand-in for the model. In job 0's run each
  model call (forward or `generate`) is widened to K copies of its inputs and its output split
  in K; job k's run is then answered from slice k of the same calls, after checking that it
  asked for the same inputs. Task code needs no change and computes each job's scores itself.

Evaluations that cannot be replayed this way (sampling, which draws other numbers for a wider
batch; outputs that cannot be split; a task that asks job k for other inputs) raise
`NotFannable` before any score is kept, and the caller scores the jobs one at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from lorabench.variants.base import AdapterLinear
from lorabench.variants.inject import SHARED_ATTR

# Job 0's run keeps the K-1 other jobs' outputs until their runs read them; past this many
# bytes (say, full LM logits over a large eval set) packing evaluation is not worth the memory.
REPLAY_LIMIT_BYTES = 1 << 30

T = TypeVar("T")  # what one job's evaluation returns (a task's `Evaluation`)


class NotFannable(RuntimeError):
    """This evaluation cannot run as one wide pass; score the jobs one at a time."""


def evaluate_fanned(
    model: nn.Module,
    job_params: Sequence[Mapping[str, Tensor]],
    run: Callable[[Any], T],
) -> list[T]:
    """`run(stand_in)` once per job, all jobs' model calls computed in job 0's run.

    `job_params` holds each job's trainable tensors under the model's parameter names (all
    jobs the same names); `run` is the task's evaluation of one model. Raises `NotFannable`
    when the evaluation cannot be fanned out.
    """
    k = len(job_params)
    frozen = [{n: t.detach() for n, t in params.items()} for params in job_params]
    with routed(model, frozen):
        replay = _Replay(model, k)
        scores = []
        for job in range(k):
            replay.begin(job)
            scores.append(run(replay))
            replay.end()
    return scores


@contextlib.contextmanager
def routed(model: nn.Module, job_params: Sequence[Mapping[str, Tensor]]) -> Iterator[None]:
    """Within the block, `model` expects K copies of each batch, stacked along dim 0; gradients
    flow back to each job's own tensors."""
    names = list(job_params[0])
    stacked = {n: torch.stack([p[n] for p in job_params]) for n in names}
    units = _units(model)
    shared_prefix = SHARED_ATTR + "."
    shared = getattr(model, SHARED_ATTR, None)
    covered = {n for n in names if n.startswith(shared_prefix)}
    routers: dict[str, _Router] = {}
    for unit_name, unit in units.items():
        prefix = unit_name + "."
        own = {"layer." + n[len(prefix) :]: stacked[n] for n in names if n.startswith(prefix)}
        if not own:
            continue
        covered.update(n for n in names if n.startswith(prefix))
        with_shared = isinstance(unit, AdapterLinear) and isinstance(shared, nn.Module)
        if with_shared:
            own.update({"shared." + n[len(shared_prefix) :]: stacked[n]
                        for n in names if n.startswith(shared_prefix)})  # fmt: skip
        routers[unit_name] = _Router(unit, shared if with_shared else None, own, len(job_params))
    missing = [n for n in names if n not in covered]
    if missing:
        raise NotFannable(f"trainable tensor {missing[0]!r} is outside every routable module")
    try:
        for name, router in routers.items():
            _replace(model, name, router)
        yield
    finally:
        for name, router in routers.items():
            _replace(model, name, router.call.layer)


def _units(model: nn.Module) -> dict[str, nn.Module]:
    """The outermost adapter layers and modules owning trainable tensors, by name."""
    units: dict[str, nn.Module] = {}
    for name, module in model.named_modules():
        if not name or name == SHARED_ATTR or name.startswith(SHARED_ATTR + "."):
            continue
        if any(name.startswith(u + ".") for u in units):
            continue
        owns = any(p.requires_grad for p in module.parameters(recurse=False))
        if isinstance(module, AdapterLinear) or owns:
            units[name] = module
    return units


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name), attr, module)


class _Call(nn.Module):
    """The unit and the shared adapter tensors it reads, under one root for functional_call."""

    def __init__(self, layer: nn.Module, shared: nn.Module | None) -> None:
        super().__init__()
        self.layer = layer
        if shared is not None:
            self.shared = shared

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class _Router(nn.Module):
    def __init__(self, layer: nn.Module, shared: nn.Module | None,
                 stacked: dict[str, Tensor], k: int) -> None:  # fmt: skip
        super().__init__()
        self.call, self.k = _Call(layer, shared), k
        self.stacked = stacked  # a plain dict: these tensors are not this module's parameters

        def one(params: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self.call, params, (x,), strict=False)

        self.wide = vmap(one, in_dims=(0, 0), randomness="different")

    @property
    def weight(self) -> Tensor:
        # Model code sometimes reads a layer's weight (for its dtype or device).
        return self.call.layer.weight

    @property
    def bias(self) -> Tensor | None:
        return self.call.layer.bias

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] % self.k:
            raise NotFannable(f"a batch of {x.shape[0]} rows does not split into {self.k} jobs")
        out = self.wide(self.stacked, x.unflatten(0, (self.k, -1)))
        return out.flatten(0, 1)


class _Replay:
    """Stands in for the model in the task's evaluation, one job at a time (module docstring)."""

    def __init__(self, model: nn.Module, k: int) -> None:
        self._model, self._k = model, k
        self._calls: list[tuple[str, list[Any], list[Any]]] = []
        self._job, self._position, self._kept = 0, 0, 0

    def begin(self, job: int) -> None:
        self._job, self._position = job, 0

    def end(self) -> None:
        if self._job and self._position != len(self._calls):
            raise NotFannable("the evaluation called the model fewer times for another job")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._answer("forward", self._model, args, kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        config = kwargs.get("generation_config") or getattr(self._model, "generation_config", None)
        if kwargs.get("do_sample", getattr(config, "do_sample", False)):
            raise NotFannable("sampled generation draws other numbers in a wider batch")
        return self._answer("generate", self._model.generate, args, kwargs)

    def _answer(self, kind: str, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        inputs = _tensors((args, kwargs))
        if self._job == 0:
            wide = fn(*_widen(args, self._k), **_widen(kwargs, self._k))
            outputs = [_slice(wide, self._k, j) for j in range(self._k)]
            self._kept += sum(t.numel() * t.element_size() for t in _tensors(outputs[1:]))
            if self._kept > REPLAY_LIMIT_BYTES:
                raise NotFannable("the evaluation's outputs are too large to keep for replay")
            self._calls.append((kind, inputs, outputs))
            return outputs[0]
        if self._position >= len(self._calls):
            raise NotFannable("the evaluation called the model more times for another job")
        recorded_kind, recorded_inputs, outputs = self._calls[self._position]
        self._position += 1
        same = recorded_kind == kind and len(recorded_inputs) == len(inputs)
        if not same or not all(_equal(a, b) for a, b in zip(recorded_inputs, inputs, strict=True)):
            raise NotFannable("the evaluation asked another job's model for other inputs")
        return outputs[self._job]


def _tensors(value: Any) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _tensors(v)]
    return []


def _equal(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b.to(a.device)))


def _widen(value: Any, k: int) -> Any:
    """K copies of every batched tensor, stacked along dim 0 (job-major)."""
    if isinstance(value, Tensor):
        return value.repeat(k, *([1] * (value.dim() - 1))) if value.dim() else value
    if isinstance(value, Mapping):
        return {key: _widen(v, k) for key, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_widen(v, k) for v in value)
    if isinstance(value, list):
        return [_widen(v, k) for v in value]
    return value


def _slice(value: Any, k: int, job: int) -> Any:
    """Job `job`'s rows of a model output (tensors, tuples, dicts, Hugging Face outputs)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Tensor):
        if not value.dim() or value.shape[0] % k:
            raise NotFannable(f"an output of shape {tuple(value.shape)} does not split in {k}")
        return value.unflatten(0, (k, -1))[job]
    if isinstance(value, Mapping):  # dict, and transformers' ModelOutput (an OrderedDict)
        parts = {key: _slice(v, k, job) for key, v in value.items()}
        return parts if type(value) is dict else type(value)(**parts)
    if isinstance(value, tuple | list):
        return type(value)(_slice(v, k, job) for v in value)
    raise NotFannable(f"cannot split a model output of type {type(value).__name__}")
