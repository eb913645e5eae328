"""The paper's headline as numbers: how far the learning rate moves the score vs the variant.

Spreads are max - min of raw scores (fractions stay fractions; the caller scales for display).
Cells without a score (NaN) are skipped; a variant with no score at all is left out. `finding`
reads the lr table's cells and chosen learning rates (so it honours ``--select``), adds 95%
intervals of the spreads (paired bootstrap over the test examples) and the variants
statistically tied with the best at their own learning rates, where outcomes are stored.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from rich.table import Table

from lorabench.report.cells import display_scores, scale
from lorabench.report.compare import cell_keys, paired_p_value, prepared
from lorabench.report.configs import format_lr
from lorabench.report.load import Data
from lorabench.report.select import Scoring
from lorabench.report.stats import ALPHA, bootstrap, percentile_interval
from lorabench.report.tables.lr import lr_block

Interval = tuple[float, float]
NO_INTERVAL = (math.nan, math.nan)


@dataclass(frozen=True)
class Finding:
    """``lr_spread[v]``: best - worst score of variant v over learning rates;
    ``lr_spread_overall``: best - worst over the whole grid;
    ``variant_spread_at_best``: max - min over variants of each one's score at its own best lr;
    ``variant_spread_at_reference``: max - min over variants at the reference variant's best lr
    (NaN when the reference variant is absent). ``*_ci``: 95% intervals (NaN: not computed);
    ``p_values``: each other variant against ``best`` (one-sided paired bootstrap)."""

    best_lr: dict[str, float]
    best_score: dict[str, float]
    lr_spread: dict[str, float]
    lr_spread_overall: float
    variant_spread_at_best: float
    reference: str
    reference_lr: float
    variant_spread_at_reference: float
    lr_spread_ci: Mapping[str, Interval] = field(default_factory=dict)
    variant_spread_ci: Interval = NO_INTERVAL
    best: str = ""
    p_values: Mapping[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def lr_matters_more(self) -> bool:
        """True when even the least lr-sensitive variant moves more than the variants differ."""
        return min(self.lr_spread.values()) > self.variant_spread_at_best

    @property
    def tied(self) -> list[str]:
        return [v for v, p in self.p_values.items() if p >= ALPHA]


def lr_vs_variant(
    scores: pd.DataFrame,
    reference: str = "lora",
    *,
    best_lr: Mapping[str, float] | None = None,
    higher_is_better: bool = True,
) -> Finding:
    """``scores``: rows variants, columns learning rates, one score per cell (e.g. seed means).
    ``best_lr`` (default: each row's best score, ties to the smallest lr) is each variant's
    chosen learning rate, e.g. by the val rule."""
    scores = scores.astype(float).sort_index(axis=1).dropna(how="all")
    if scores.empty:
        raise ValueError("no scores to compare: every cell is missing")
    pick = {str(v): float(row.idxmax() if higher_is_better else row.idxmin())
            for v, row in scores.iterrows()}  # fmt: skip
    chosen = {v: float(best_lr.get(v, pick[v])) if best_lr else pick[v] for v in pick}
    best_score = {str(v): float(scores.at[v, chosen[str(v)]]) for v in scores.index}
    lr_spread = {str(v): float(row.max() - row.min()) for v, row in scores.iterrows()}
    values = scores.to_numpy().ravel()
    values = values[~pd.isna(values)]
    best = [s for s in best_score.values() if not math.isnan(s)]
    reference_lr, at_reference = math.nan, math.nan
    if reference in chosen:
        reference_lr = chosen[reference]
        column = scores[reference_lr].dropna()
        at_reference = float(column.max() - column.min())
    return Finding(
        best_lr=chosen,
        best_score=best_score,
        lr_spread=lr_spread,
        lr_spread_overall=float(values.max() - values.min()),
        variant_spread_at_best=float(max(best) - min(best)),
        reference=reference,
        reference_lr=reference_lr,
        variant_spread_at_reference=at_reference,
    )


def _spread(means: np.ndarray) -> np.ndarray:
    return means.max(axis=0) - means.min(axis=0)


def finding(data: Data, scoring: Scoring, task: str, reference: str = "lora") -> Finding:
    """The finding on ``task``'s lr table under ``scoring`` (its rows are the variants)."""
    scores = display_scores(data, scoring)
    lr = lr_block(data, scoring, task, scores)
    factor = scale(lr.percent)[0]
    cells = {(row, x): lr.block.cell(row, format_lr(x)) for row in lr.block.rows for x in lr.lrs}
    grid = pd.DataFrame(
        [[cells[(row, x)].mean / factor for x in lr.lrs] for row in lr.block.rows],
        index=lr.block.rows, columns=lr.lrs, dtype=float,
    )  # fmt: skip
    higher = scoring.spec(task).higher_is_better
    chosen = {str(r): float(lr.chosen.at[r, "lr"]) for r in lr.chosen.index}
    base = lr_vs_variant(grid, reference, best_lr=chosen, higher_is_better=higher)
    notes = []
    task_scores = scores[scores["task"] == task]
    fallback = int(task_scores["fallback"].astype(bool).sum())
    if scoring.select == "test":
        notes.append("Epochs and learning rates chosen on the test split (--select test).")
    elif fallback == len(task_scores):
        notes.append("No job has select rows (--select val): epochs and learning rates were "
                     "chosen on the test split (the paper's rule).")  # fmt: skip
    else:
        notes.append("Epochs and learning rates chosen on the select split (--select val).")
        if fallback:
            notes.append(f"{fallback} job(s) have no select rows: their epoch and learning rate "
                         "were chosen on the test split (the paper's rule).")  # fmt: skip
    # Intervals: the same resamples of the test examples for every spread.
    prepared_cells, why = {}, ""
    for key, cell in cells.items():
        if cell.scored:
            prepared_cells[key], why = prepared(data, scoring, task, cell_keys(cell))
            if why:
                break
    lr_ci: dict[str, Interval] = {}
    spread_ci = NO_INTERVAL
    if why:
        notes.append(f"No 95% intervals: {why}.")
    else:
        for row in base.lr_spread:
            group = [prepared_cells[(row, x)] for x in lr.lrs if (row, x) in prepared_cells]
            lr_ci[row] = _interval(group)
        spread_ci = _interval([prepared_cells[(row, x)] for row, x in base.best_lr.items()])
    # Ties with the best variant at the chosen learning rates.
    sign = 1.0 if higher else -1.0
    best = max(base.best_score, key=lambda v: sign * base.best_score[v])
    p_values, reasons = {}, set()
    for row, x in base.best_lr.items():
        if row != best:
            p, reason = paired_p_value(data, scoring, cells[(best, base.best_lr[best])],
                                       cells[(row, x)])  # fmt: skip
            if reason:
                reasons.add(reason)
            else:
                p_values[row] = p
    notes += [f"Ties not tested: {reason}." for reason in sorted(reasons)]
    return dataclasses.replace(base, lr_spread_ci=lr_ci, variant_spread_ci=spread_ci, best=best,
                               p_values=p_values, notes=tuple(notes))  # fmt: skip


def _interval(cells: list) -> Interval:  # noqa: ANN001
    if len(cells) < 2:
        return NO_INTERVAL
    return percentile_interval(bootstrap(cells, _spread))


def render_finding(finding: Finding, *, metric: str, percent: bool = True) -> tuple[Table, str]:
    """A per-variant table (best lr, best score, lr spread) and the finding in sentences; x100
    if percent."""
    scale_, unit = (100.0, " points") if percent else (1.0, "")

    def num(value: float) -> str:
        return f"{value * scale_:.2f}"

    def interval(ci: Interval) -> str:
        return "" if math.isnan(ci[0]) else f"[{num(ci[0])}, {num(ci[1])}]"

    table = Table(title=f"learning rate vs variant ({metric})")
    headers = ["variant", "best lr", "best score", "spread over lrs"]
    if finding.lr_spread_ci:
        headers.append("95% interval")
    if finding.p_values:
        headers.append("p vs best")
    for header in headers:
        table.add_column(header, justify="left" if header == "variant" else "right")
    for variant, score in finding.best_score.items():
        row = [variant, format_lr(finding.best_lr[variant]), num(score),
               num(finding.lr_spread[variant])]  # fmt: skip
        if finding.lr_spread_ci:
            row.append(interval(finding.lr_spread_ci.get(variant, NO_INTERVAL)))
        if finding.p_values:
            p = finding.p_values.get(variant)
            row.append("best" if variant == finding.best else "" if p is None else f"{p:.4f}")
        table.add_row(*row)
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
    sentences = [
        f"Across learning rates each variant's {metric} moves by {num(lows)}-{num(highs)}{unit} "
        f"({num(finding.lr_spread_overall)} over the whole grid); across variants, each at its "
        f"best lr, it moves by {num(finding.variant_spread_at_best)}{unit}{at_ref}: {verdict}."
    ]
    if not math.isnan(finding.variant_spread_ci[0]):
        sentences.append(
            f"95% intervals (paired bootstrap over the test examples): across variants "
            f"{interval(finding.variant_spread_ci)}; across learning rates per variant in the "
            "table."
        )
    if finding.p_values:
        tied = ", ".join(f"{v} (p = {finding.p_values[v]:.4f})" for v in finding.tied)
        sentences.append(
            f"Statistically tied with the best ({finding.best}) at α = {ALPHA:g} (one-sided "
            f"paired bootstrap): {tied or 'none'}."
        )
    sentences += finding.notes
    return table, " ".join(sentences)
