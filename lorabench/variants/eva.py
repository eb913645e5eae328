"""EVA (Paischer et al.): explained-variance adaptation, an activation-aware init (§II-D3).

A starts as the top right-singular vectors of each layer's input activations (Eq. (121)-(123)),
found by an incremental SVD over at most `steps` batches that stops per layer once its
components stop moving (cosine similarity between consecutive steps >= `tau`); B = 0. The
rank budget (layers x r) is then redistributed across layers by explained variance (Eq. (55)):
layers end up with different ranks, from 0 to round(rho * r).

A's rows are orthonormal, as the constraint A0 A0^T = I of Eq. (121) requires and EVA / PEFT
do (whiten=False); Eq. (123)'s extra factor S_C would break that constraint.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lorabench.catalog.variants.eva import VARIANT, EvaParams
from lorabench.variants._activations import stream_layer_inputs
from lorabench.variants.base import (
    AdapterLinear,
    PeftExport,
    PeftSettings,
    PrepareContext,
    VariantSpec,
    register,
)
from lorabench.variants.inject import adapter_layers
from lorabench.variants.lora import LoRALinear

# PEFT's IncrementalPCA draws its randomized-SVD test matrix from this seed on every step.
_SVD_SEED = 42


class EvaLinear(LoRALinear):
    """LoRA whose A holds the leading input principal directions and whose rank is set by
    prepare; s = alpha / r with r the job's rank, so every layer keeps the same scale whatever
    rank it is given (PEFT's adjust_scaling_factors=True)."""

    variant_name = "eva"
    params_cls = EvaParams

    def __init__(self, base: nn.Linear, **options: Any) -> None:
        super().__init__(base, **options)
        self.budget_rank = self.rank

    @property
    def scaling(self) -> float:
        return self.alpha / self.budget_rank

    @torch.no_grad()
    def set_components(self, components: Tensor) -> None:
        """A = the given (rank, in) rows, B = 0: the layer's rank becomes len(components)."""
        factory = {"device": self.lora_A.device, "dtype": self.lora_A.dtype}
        rank = components.shape[0]
        self.lora_A = nn.Parameter(components.to(**factory).clone())
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, **factory))
        self.rank = rank


class IncrementalSVD:
    """Incremental PCA (Ross et al. 2008; sklearn/PEFT's IncrementalPCA) of a stream of rows:
    the top `k` principal directions and their explained-variance ratios, updated per batch
    from the previous components, the new centred rows and a mean correction."""

    def __init__(self, k: int, tau: float) -> None:
        self.k, self.tau = k, tau
        self.n = 0
        self.mean: Tensor | None = None  # float64
        self.sq_dev: Tensor | None = None  # per-feature sum of squared deviations, float64
        self.components: Tensor | None = None  # (<= k, d) float32
        self.singular: Tensor | None = None
        self.ratio: Tensor | None = None  # explained variance ratio of each component
        self.similarity: Tensor | None = None  # cosine similarity to the previous step's
        self.updates = 0
        self._pending: list[Tensor] = []

    def settled(self, needed: int) -> float:
        """The lowest similarity of the first `needed` components at the last update (1 for
        none needed, 0 before any comparison)."""
        if needed == 0:
            return 1.0
        if self.similarity is None or self.similarity.numel() < needed:
            return 0.0
        return float(self.similarity[:needed].min())

    def converged(self, needed: int) -> bool:
        """Whether the first `needed` components moved less than tau at the last update."""
        return self.settled(needed) >= self.tau

    def add(self, rows: Tensor) -> None:
        # The first fit needs at least k rows; smaller batches are pooled until then.
        if self.components is None:
            self._pending.append(rows)
            if sum(r.shape[0] for r in self._pending) < self.k:
                return
            rows = torch.cat(self._pending)
            self._pending = []
        self._fit(rows)

    def flush(self) -> None:
        """Fit what is still pooled (fewer than k rows in all): fewer components."""
        if self._pending:
            rows = torch.cat(self._pending)
            self._pending = []
            self._fit(rows)

    def _fit(self, rows: Tensor) -> None:
        rows = rows.float()
        n_new = rows.shape[0]
        total = self.n + n_new
        batch_mean = rows.double().mean(0)
        centred = rows - batch_mean.float()
        batch_sq = centred.double().square().sum(0)
        if self.components is None:
            stacked, sq_dev = centred, batch_sq
        else:
            shift = self.mean - batch_mean
            sq_dev = self.sq_dev + batch_sq + (self.n * n_new / total) * shift.square()
            correction = ((self.n * n_new / total) ** 0.5 * shift).float().unsqueeze(0)
            previous = self.singular.unsqueeze(1) * self.components
            stacked = torch.cat([previous, centred, correction])
        singular, vh = _top_svd(stacked, self.k, warm=self.components)
        vh = _flip_signs(vh)
        if self.components is not None:
            m = min(vh.shape[0], self.components.shape[0])
            sim = F.cosine_similarity(vh[:m], self.components[:m], dim=1).abs()
            self.similarity = torch.cat([sim, sim.new_zeros(vh.shape[0] - m)])
        self.mean = (self.mean * self.n + batch_mean * n_new) / total if self.n else batch_mean
        self.n, self.sq_dev = total, sq_dev
        self.components, self.singular = vh, singular
        total_var = float(sq_dev.sum())
        # Eq. (55): share of the total variance each component explains.
        ratio = singular.double().square() / total_var if total_var > 0 else singular.double() * 0
        self.ratio = ratio.float()
        self.updates += 1


def _top_svd(x: Tensor, k: int, warm: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Top-k singular values and right-singular vectors (rows) of x by a randomized SVD
    (Halko et al.; PEFT's IncrementalPCA uses torch.svd_lowrank with 2k columns, 4 power
    iterations). Warm-started from the previous step's components, whose span already holds
    most of the answer, 2 power iterations suffice; exact SVD when x is small."""
    q = 2 * k
    if 2 * q >= min(x.shape):
        _, s, vh = torch.linalg.svd(x, full_matrices=False)
        return s[:k], vh[:k]
    gen = torch.Generator(device=x.device).manual_seed(_SVD_SEED)
    columns = q if warm is None else q - warm.shape[0]
    omega = torch.randn(x.shape[1], columns, generator=gen, device=x.device, dtype=x.dtype)
    if warm is not None:
        omega = torch.cat([warm.T.to(x.dtype), omega], dim=1)
    basis = torch.linalg.qr(x @ omega).Q
    for _ in range(4 if warm is None else 2):
        basis = torch.linalg.qr(x @ torch.linalg.qr(x.T @ basis).Q).Q
    _, s, vh = torch.linalg.svd(basis.T @ x, full_matrices=False)
    return s[:k], vh[:k]


def _flip_signs(vh: Tensor) -> Tensor:
    # sklearn's svd_flip(u_based_decision=False): each row's largest-magnitude entry positive,
    # so A's signs are deterministic. (PEFT then compares steps by signed cosine similarity; we
    # take |cos|, as a flip of the largest entry would otherwise read as -1 for a settled one.)
    top = vh.abs().argmax(dim=1)
    signs = torch.sign(vh.gather(1, top.unsqueeze(1)))
    return vh * torch.where(signs == 0, torch.ones_like(signs), signs)


def allocate_ranks(ratios: dict[str, Tensor], budget: int) -> dict[str, int]:
    """Eq. (55): the `budget` components with the largest explained-variance ratios over all
    layers; a layer's rank is how many of its own made the cut (ties: earlier layer first)."""
    names = [name for name, r in ratios.items() for _ in range(r.numel())]
    if not names:
        return dict.fromkeys(ratios, 0)
    values = torch.cat([r.float().reshape(-1).cpu() for r in ratios.values()])
    order = torch.sort(values, descending=True, stable=True).indices[:budget]
    counts = dict.fromkeys(ratios, 0)
    for i in order.tolist():
        counts[names[i]] += 1
    return counts


def _layer_ratios(
    groups: dict[str, list[str]], svds: dict[str, IncrementalSVD], max_rank: dict[str, int]
) -> dict[str, Tensor]:
    # Layers of one group share their leader's components, each up to its own maximum rank.
    ratios = {}
    for leader, members in groups.items():
        svd = svds.get(leader)
        for name in members:
            ok = svd is not None and svd.ratio is not None
            ratios[name] = svd.ratio[: max_rank[name]] if ok else torch.zeros(0)
    return ratios


@torch.no_grad()
def prepare_eva(ctx: PrepareContext) -> dict[str, Any]:
    """Incremental SVD of every layer's inputs, rank allocation, then A = top components."""
    params: EvaParams = ctx.params
    layers = dict(adapter_layers(ctx.model))
    budget = sum(layer.budget_rank for layer in layers.values())
    max_rank = {
        name: min(round(layer.budget_rank * params.rho), layer.in_features)
        for name, layer in layers.items()
    }
    svds: dict[str, IncrementalSVD] = {}
    groups: dict[str, list[str]] = {}
    ranks = dict(max_rank)  # until every layer has components, each needs all of its own

    def wanted(leader: str) -> bool:
        # Like PEFT: a layer is done once the components its current rank needs converged.
        svd = svds.get(leader)
        need = max(ranks[name] for name in groups.get(leader, [leader]))
        return svd is None or not svd.converged(need)

    def consume(leader: str, rows: Tensor, sequence: Tensor) -> None:
        svds.setdefault(leader, IncrementalSVD(max_rank[leader], params.tau)).add(rows)

    def after_batch(step: int, found: dict[str, list[str]]) -> bool:
        groups.clear()
        groups.update(found)
        if all(svds.get(leader) and svds[leader].ratio is not None for leader in groups):
            ranks.update(allocate_ranks(_layer_ratios(groups, svds, max_rank), budget))
        return not any(wanted(leader) for leader in groups)

    run = lambda batch: ctx.loss(ctx.model, batch)  # noqa: E731
    batches = ctx.batches(params.steps)
    found = stream_layer_inputs(ctx.model, batches, run, consume, wanted=wanted,
                                after_batch=after_batch)  # fmt: skip
    for svd in svds.values():
        svd.flush()
    # Layers the forward never reached get no rank: there is nothing to initialise them from.
    found.update({name: [name] for name in layers if all(name not in m for m in found.values())})
    ranks = allocate_ranks(_layer_ratios(found, svds, max_rank), budget)
    keys = ("ranks", "A", "updates", "similarity")
    state: dict[str, Any] = {"budget": budget, **{key: {} for key in keys}}
    for leader, members in found.items():
        svd = svds.get(leader)
        for name in members:
            layer, rank = layers[name], ranks[name]
            if svd is not None and svd.components is not None:
                layer.set_components(svd.components[:rank])
            else:
                layer.set_components(torch.zeros(0, layer.in_features))
            state["ranks"][name] = rank
            state["A"][name] = layer.lora_A.detach().clone()
            # Diagnostics: SVD steps taken, and how settled the components it got were.
            state["updates"][name] = svd.updates if svd is not None else 0
            state["similarity"][name] = svd.settled(rank) if svd is not None else 0.0
    return state


@torch.no_grad()
def restore_eva(model: nn.Module, state: dict[str, Any], params: EvaParams) -> None:
    """Re-create each layer at its allocated rank with the prepared A (and B = 0)."""
    layers = dict(adapter_layers(model))
    if set(state["A"]) != set(layers):
        raise ValueError("the prepared EVA state does not fit the model's adapter layers")
    for name, layer in layers.items():
        layer.set_components(state["A"][name])


def report_eva(model: nn.Module, params: EvaParams) -> dict[str, float]:
    """The allocated rank of every layer, their total and the adapter size they give."""
    layers = adapter_layers(model)
    out = {f"rank/{name}": float(layer.rank) for name, layer in layers}
    out["rank_total"] = float(sum(layer.rank for _, layer in layers))
    out["eva_adapter_params"] = float(
        sum(p.numel() for _, layer in layers for _, p in layer.adapter_named_parameters())
    )
    return out


def peft_eva_config(settings: PeftSettings) -> Any:
    from peft import EvaConfig, LoraConfig

    params: EvaParams = settings.params
    # Per-layer ranks reach us only if PeftSettings carries them (`ranks`, name -> rank).
    ranks = dict(getattr(settings, "ranks", None) or {})
    targets = [t for t in settings.targets if ranks.get(t, settings.rank) > 0]
    changed = {t: ranks[t] for t in targets if ranks.get(t, settings.rank) != settings.rank}
    return LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        modules_to_save=settings.modules_to_save or None,
        init_lora_weights="eva",
        eva_config=EvaConfig(rho=params.rho, tau=params.tau),
        rank_pattern=changed,
        # PEFT's adjust_scaling_factors: alpha_i = alpha * r_i / r keeps s = alpha / r.
        alpha_pattern={t: settings.alpha * r / settings.rank for t, r in changed.items()},
    )


@torch.no_grad()
def copy_eva_to_peft(ours: AdapterLinear, theirs: nn.Module) -> None:
    if ours.rank == 0:  # PEFT drops rank-0 layers (peft_eva_config leaves them out)
        if hasattr(theirs, "lora_A"):
            raise ValueError("a rank-0 EVA layer has a PEFT adapter; pass per-layer ranks")
        return
    if theirs.r["default"] != ours.rank:
        raise ValueError(
            f"EVA gave this layer rank {ours.rank} but the PEFT config has "
            f"{theirs.r['default']}: PeftSettings must carry the per-layer ranks (`ranks`)"
        )
    theirs.lora_A["default"].weight.copy_(ours.lora_A)
    theirs.lora_B["default"].weight.copy_(ours.lora_B)


SPEC = register(
    VariantSpec(
        info=VARIANT,
        layer_cls=EvaLinear,
        peft_export=PeftExport(make_config=peft_eva_config, copy_weights=copy_eva_to_peft),
        prepare=prepare_eva,
        restore=restore_eva,
        report=report_eva,
    )
)
