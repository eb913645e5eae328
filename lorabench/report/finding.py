"""The paper's headline as numbers: how far the learning rate moves the score vs the variant.

Spreads are max - min of raw scores (fractions stay fractions; the caller scales for display).
Cells without a score (NaN) are skipped; a variant with no score at all is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from rich.table import Table

from lorabench.report.aggregate import format_lr


@dataclass(frozen=True)
class Finding:
    """``lr_spread[v]``: best - worst score of variant v over learning rates;
    ``lr_spread_overall``: best - worst over the whole grid;
    ``variant_spread_at_best``: max - min over variants of each one's best score (own best lr);
    ``variant_spread_at_reference``: max - min over variants at the reference variant's best lr
    (NaN when the reference variant is absent).
    """

    best_lr: dict[str, float]
    best_score: dict[str, float]
    lr_spread: dict[str, float]
    lr_spread_overall: float
    variant_spread_at_best: float
    reference: str
    reference_lr: float
    variant_spread_at_reference: float

    @property
    def lr_matters_more(self) -> bool:
        """True when even the least lr-sensitive variant moves more than the variants differ."""
        return min(self.lr_spread.values()) > self.variant_spread_at_best


def lr_vs_variant(scores: pd.DataFrame, reference: str = "lora") -> Finding:
    """``scores``: rows variants, columns learning rates, values one score per cell (e.g. the
    seed mean of `LrGrid.mean`). Ties for the best lr go to the smallest lr."""
    scores = scores.astype(float).sort_index(axis=1).dropna(how="all")
    if scores.empty:
        raise ValueError("no scores to compare: every cell is missing")
    best_lr = {str(v): float(row.idxmax()) for v, row in scores.iterrows()}
    best_score = {str(v): float(row.max()) for v, row in scores.iterrows()}
    lr_spread = {str(v): float(row.max() - row.min()) for v, row in scores.iterrows()}
    values = scores.to_numpy().ravel()
    values = values[~pd.isna(values)]
    best = list(best_score.values())
    reference_lr, at_reference = math.nan, math.nan
    if reference in best_lr:
        reference_lr = best_lr[reference]
        column = scores[reference_lr].dropna()
        at_reference = float(column.max() - column.min())
    return Finding(
        best_lr=best_lr,
        best_score=best_score,
        lr_spread=lr_spread,
        lr_spread_overall=float(values.max() - values.min()),
        variant_spread_at_best=float(max(best) - min(best)),
        reference=reference,
        reference_lr=reference_lr,
        variant_spread_at_reference=at_reference,
    )


def render_finding(finding: Finding, *, metric: str, percent: bool = True) -> tuple[Table, str]:
    """A per-variant table (best lr, best score, lr spread) and one sentence; x100 if percent."""
    scale, unit = (100.0, " points") if percent else (1.0, "")

    def num(value: float) -> str:
        return f"{value * scale:.2f}"

    table = Table(title=f"learning rate vs variant ({metric})")
    for header in ("variant", "best lr", "best score", "spread over lrs"):
        table.add_column(header, justify="left" if header == "variant" else "right")
    for variant, score in finding.best_score.items():
        table.add_row(
            variant, format_lr(finding.best_lr[variant]), num(score),
            num(finding.lr_spread[variant]),
        )  # fmt: skip
    table.add_section()
    table.add_row("all variants", "", "", num(finding.lr_spread_overall))
    lows, highs = min(finding.lr_spread.values()), max(finding.lr_spread.values())
    at_ref = ""
    if not math.isnan(finding.reference_lr):
        at_ref = (
            f" ({num(finding.variant_spread_at_reference)} at {finding.reference}'s best lr "
            f"{format_lr(finding.reference_lr)})"
        )
    verdict = (
        "the learning rate matters more than the variant"
        if finding.lr_matters_more
        else "here the variant matters as much as the learning rate"
    )
    sentence = (
        f"Across learning rates each variant's {metric} moves by {num(lows)}-{num(highs)}{unit} "
        f"({num(finding.lr_spread_overall)} over the whole grid); across variants, each at its "
        f"best lr, it moves by {num(finding.variant_spread_at_best)}{unit}{at_ref}: {verdict}."
    )
    return table, sentence
