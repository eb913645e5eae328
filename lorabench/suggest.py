"""Suggestions ("did you mean …?") for a mistyped name, in one wording for every catalog a user
names things from: variants, tasks, presets, tables, figures, config fields.

Floor 0: the standard library only, so the catalog, config and the fast commands can use it.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable

# How alike two names must be (difflib's ratio) to be suggested: "doar" -> "dora" (0.75),
# "seeds" -> "seed" (0.89); "xyz" -> nothing. Of those, only names within MARGIN of the best
# are offered: "doar" is not also offered "delora" (0.6).
CUTOFF = 0.6
MARGIN = 0.1
MOST = 3


def close_names(name: str, known: Iterable[str]) -> list[str]:
    """The known names most like ``name``, best first (at most three; none when nothing is
    alike). Case is ignored, and so is a prefix every known name shares ("paper-" of the
    presets), which would otherwise make every name look alike."""
    known = list(known)
    shared = os.path.commonprefix(known) if len(known) > 1 else ""
    folded = str(name).casefold()
    if shared and folded.startswith(shared.casefold()):
        folded = folded[len(shared) :]
    scores = []
    for candidate in known:
        other = candidate[len(shared) :].casefold()
        ratio = difflib.SequenceMatcher(None, folded, other).ratio()
        if ratio >= CUTOFF:
            scores.append((ratio, candidate))
    scores.sort(key=lambda pair: -pair[0])  # stable: equal scores keep the catalog's order
    best = scores[0][0] if scores else 0.0
    return [candidate for ratio, candidate in scores[:MOST] if ratio >= best - MARGIN]


def _either(names: list[str]) -> str:
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


def unknown_name(
    kind: str, name: object, known: Iterable[str], *, lister: str = "", listed_as: str = "known"
) -> str:
    """ "unknown variant 'doar'; did you mean 'dora'? (lorabench variants lists all 31)".

    ``lister``: the command that lists every name; when given, the names are never printed
    here. Without it (short lists: tables, presets, keys) they are, after ``listed_as``, when
    nothing is alike: "unknown table 'x'; known: glue, highrank, ..."."""
    known = list(known)
    message = f"unknown {kind} {name!r}"
    close = close_names(str(name), known)
    if close:
        message += f"; did you mean {_either(close)}?"
    if lister:
        listed = f"{lister} lists all {len(known)}"
        return message + (f" ({listed})" if close else f"; {listed}")
    if not close:
        message += f"; {listed_as}: {', '.join(known) or '(none)'}"
    return message
