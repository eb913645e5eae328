"""Reporting: the paper's tables and figures from the job database, read-only.

`load` reads jobs (every config field), per-epoch test/select rows and summary metrics;
`configs` says which fields set configurations apart and labels rows; `select` holds the
selection rules (epoch and learning rate, on the test or the select split); `stats` the t
intervals and the paired bootstrap; `cells`/`blocks`/`compare` build cells and mark the best and
tied ones; `tables/*` and `figures` are registered in `registry`; `render` writes them.
"""
