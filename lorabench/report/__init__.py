"""Reporting: turn evaluation results into the paper's learning-rate tables and figures.

`load.py` (written by the integrator) builds the `evals` / `jobs` DataFrames from the database;
`aggregate` reduces them to a variant x learning-rate grid, `render` writes tables and
`figures` draws the learning-rate sweep plots.
"""
