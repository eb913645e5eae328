"""Drawing helpers shared by the figures, without pyplot (no global state): one colour and
marker per line label in every panel, a legend outside the panels, ticks at the swept values,
and saving with that legend inside the image."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

MAX_COLUMNS = 4
PANEL_SIZE = (4.2, 3.4)  # inches per panel
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def styles(labels: Iterable[str]) -> dict[str, dict[str, object]]:
    """Colour and marker per label, by sorted label, so every panel and figure agrees."""
    names = sorted({str(v) for v in labels})
    palette: list[object] = [f"C{i}" for i in range(10)]
    if len(names) > 10:
        import matplotlib

        cmap = matplotlib.colormaps["tab20"]
        palette = [cmap(i) for i in range(20)]
    return {
        v: {"color": palette[i % len(palette)], "marker": MARKERS[i % len(MARKERS)]}
        for i, v in enumerate(names)
    }


def legend_width(labels: Sequence[str]) -> float:
    """Inches a one-column legend needs (estimated from the longest label, no renderer)."""
    longest = max((len(str(label)) for label in labels), default=0)
    return 0.7 + 0.075 * max(longest, 7)


def legend_outside(
    fig: Figure, owner: Axes, handles: Sequence, labels: Sequence[str], title: str
) -> float:
    """Legend right of all panels, owned by ``owner`` but taking no layout space; returns the
    right edge (figure fraction) to pass to tight_layout. The caller widened the figure by
    ``legend_width(labels)``; `save_figure` adds axes legends to the saved bounding box."""
    right = 1 - legend_width(labels) / fig.get_figwidth()
    if handles:  # nothing drawn yet (no finished job): empty panels, no legend
        legend = owner.legend(
            handles=handles, labels=labels, title=title, fontsize="small", loc="center left",
            bbox_to_anchor=(right + 0.01, 0.5), bbox_transform=fig.transFigure, frameon=False,
        )  # fmt: skip
        legend.set_in_layout(False)
    return right


def fixed_ticks(ax: Axes, values: Sequence[float], fmt: Callable[[float], str]) -> None:
    """Ticks exactly at the swept values (log axes otherwise label only powers of ten)."""
    if not values:
        return
    ax.xaxis.set_major_locator(FixedLocator(list(values)))
    ax.xaxis.set_major_formatter(FixedFormatter([fmt(v) for v in values]))
    ax.xaxis.set_minor_locator(NullLocator())
    if len(values) > 4:
        ax.tick_params(axis="x", labelrotation=45)


def save_figure(
    fig: Figure, out_dir: Path, name: str, formats: Iterable[str] = ("png",)
) -> list[Path]:
    """Save ``fig`` as ``out_dir/name.<fmt>`` for each format (out_dir created); return paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Legends kept out of the layout must still be inside the cropped image; passing any extra
    # artists replaces matplotlib's defaults (suptitle, ...), so those are listed too.
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    extra = [*fig.get_default_bbox_extra_artists(), *fig.legends, *legends]
    paths = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt.lstrip('.')}"
        fig.savefig(path, dpi=150, bbox_inches="tight", bbox_extra_artists=extra)
        paths.append(path)
    return paths
