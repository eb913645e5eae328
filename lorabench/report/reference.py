"""The paper's own numbers (shipped as CSV in `lorabench/report/paper/`), for `--compare paper`.

Values are as printed in the paper: percentages for scores (CoLA's MCC and STS-B's Pearson
x100 as well), minutes and MB for Table II. Provenance: `lorabench/report/paper/README.md`.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

PAPER_TABLES = {
    "overhead": "Table II: parameters, time and peak memory per variant (Llama-3.1-8B, H200)",
    "highrank": "Table III: r = 128 on GSM8K and HumanEval across learning rates",
    "glue": "Tables IV-X: GLUE per learning rate (RoBERTa-base), with the average",
}


def paper_table(name: str) -> pd.DataFrame:
    """One of PAPER_TABLES as a long-format frame (one row per reported cell)."""
    if name not in PAPER_TABLES:
        known = ", ".join(PAPER_TABLES)
        raise ValueError(f"no paper table {name!r}; the paper's tables shipped here: {known}")
    with resources.files("lorabench.report").joinpath(f"paper/{name}.csv").open() as source:
        return pd.read_csv(source)
