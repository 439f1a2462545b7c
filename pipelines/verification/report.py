"""The verification report of a period: a table for the terminal and skill plots (PNG).

    table = period_table(pooled_by_domain)   # rich Table: a column per method, a row per metric
    paths = skill_plots(pooled, out_dir, step_minutes)

Plots, one line per method: CSI against lead time per threshold, FSS against scale per
threshold (pooled over leads), MAE against lead time, frequency bias against lead time per
threshold.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rich.table import Table  # noqa: E402

from pipelines.plots import one_figure_at_a_time, save_figure  # noqa: E402
from pipelines.scoring.scores import fss_name, metric_name  # noqa: E402
from pipelines.verification.store import Pooled  # noqa: E402

HEADLINE_MM_H = 1.0  # the threshold of the table's POD, FAR and bias columns


def _value(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def period_table(pooled: list[Pooled]) -> Table:
    """Scores pooled over the period and every lead: a column per method, a row per domain and
    metric (so that it reads at 80 columns however many metrics there are)."""
    table = Table(title="Verification (pooled over the period and leads 1..n)")
    if not pooled or not pooled[0].scores:
        return table
    spec = next(iter(pooled[0].scores.values())).spec
    fss_scale = spec.fss_scales[len(spec.fss_scales) // 2] if spec.fss_scales else None
    metrics = [(f"CSI {t:g}", metric_name(t)) for t in spec.thresholds]
    metrics += [(f"{k} {HEADLINE_MM_H:g}", metric_name(HEADLINE_MM_H, k)) for k in ("POD", "FAR")]
    metrics += [(f"bias {HEADLINE_MM_H:g}", metric_name(HEADLINE_MM_H, "BIAS"))]
    if fss_scale:
        metrics += [
            (f"FSS {t:g} @{fss_scale}", fss_name(t, fss_scale)) for t in spec.fss_thresholds
        ]
    metrics += [("MAE", "mae"), ("RMSE", "rmse"), ("ME", "me")]
    methods = list(dict.fromkeys(m for p in pooled for m in p.scores))
    for c in ("domain", "metric", *methods):
        table.add_column(c, justify="left" if c in ("domain", "metric") else "right")
    for p in pooled:
        summaries = {m: s.summary() for m, s in p.scores.items()}
        table.add_row(
            p.domain, "issues", *(str(p.issues) if m in summaries else "-" for m in methods)
        )
        for label, key in metrics:
            cells = [_value(summaries[m].get(key)) if m in summaries else "-" for m in methods]
            table.add_row("", label, *cells)
        table.add_section()
    return table


def _per_lead(summary: dict, key: str) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in summary["per_lead"][key]], dtype=float)


def _panels(n: int, title: str):
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.8), dpi=110, squeeze=False)
    fig.suptitle(title, fontsize=11)
    return fig, axes[0]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    return save_figure(fig, path)


@one_figure_at_a_time
def skill_plots(pooled: Pooled, out: Path, step_minutes: int) -> list[Path]:
    """The four skill plots of one domain's period into ``out``; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    summaries = {m: s.summary() for m, s in pooled.scores.items()}
    spec = next(iter(pooled.scores.values())).spec
    leads = step_minutes * np.arange(1, spec.leads + 1)
    period = f"{pooled.domain}, {pooled.issues} issues" + (
        f" {pooled.first:%Y-%m-%d %H:%M} .. {pooled.last:%Y-%m-%d %H:%M}" if pooled.first else ""
    )
    paths = []

    def by_lead(name: str, title: str, keys: list[tuple[str, str]], ylabel: str, ref=None):
        fig, axes = _panels(len(keys), f"{title}: {period}")
        for ax, (key, label) in zip(axes, keys, strict=True):
            for method, s in summaries.items():
                ax.plot(leads, _per_lead(s, key), marker="o", ms=3, label=method)
            if ref is not None:
                ax.axhline(ref, color="grey", lw=0.8, ls="--")
            ax.set(title=label, xlabel="lead time (min)", ylabel=ylabel)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        paths.append(_save(fig, out / f"{pooled.domain}_{name}.png"))

    thresholds = [(metric_name(t), f"> {t:g} mm/h") for t in spec.thresholds]
    by_lead("csi_lead", "CSI", thresholds, "CSI")
    bias = [(metric_name(t, "BIAS"), f"> {t:g} mm/h") for t in spec.thresholds]
    by_lead("bias_lead", "Frequency bias", bias, "forecast / observed events", ref=1.0)
    by_lead("mae_lead", "Mean absolute error", [("mae", "rain rate")], "MAE (mm/h)")
    if spec.fss_scales:
        fig, axes = _panels(len(spec.fss_thresholds), f"FSS against scale: {period}")
        for ax, t in zip(axes, spec.fss_thresholds, strict=True):
            for method, s in summaries.items():
                values = [s.get(fss_name(t, k)) for k in spec.fss_scales]
                y = [np.nan if v is None else v for v in values]
                ax.plot(spec.fss_scales, y, marker="o", ms=3, label=method)
            ax.set(
                title=f">= {t:g} mm/h (pysteps FSS), all leads",
                xlabel="scale (cells)",
                ylabel="FSS",
            )
            ax.set_xscale("log")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        paths.append(_save(fig, out / f"{pooled.domain}_fss_scale.png"))
    return paths
