"""What every benchmark's `plot` (docs/plots/*.png, drawn with matplotlib from its saved figures)
shares: the style, the saving, the axes and the target lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "font.size": 10, "axes.grid": True,
                         "grid.alpha": 0.3, "legend.fontsize": 9})  # fmt: skip
    return plt


def save(plt: Any, fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def log2_x(ax: Any, xs: list[float], labels: list[str]) -> None:
    """An x axis of doubling sizes, each tick at a measured one."""
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, labels)
    ax.minorticks_off()


def below(ax: Any, ncols: int = 2) -> None:
    """Legend under the axes, where it can never hide a line."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=ncols, frameon=False)


def plain_log_ticks(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def target(ax: Any, value: float, label: str, highest: float) -> None:
    """A target line, unless it would squash the data (then said in the legend only)."""
    if value <= highest * 2.5:
        ax.axhline(value, color="red", linestyle=":", label=label)
        ax.set_ylim(0, max(value, highest) * 1.1)
    else:
        ax.plot([], [], " ", label=f"{label} (far above this scale)")
        ax.set_ylim(0, highest * 1.15)
