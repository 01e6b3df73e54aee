"""Small HTML helpers: self-contained reports with inline PNG figures, each opening with the
provenance header (title, REAL or SYNTHETIC badge, where every figure comes from)."""

from __future__ import annotations

import base64
import html
import io
import re
from typing import TYPE_CHECKING, Any

import pandas as pd

from components.core.lineage import Provenance

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STYLE = (
    "body{font-family:sans-serif;margin:24px;max-width:1100px;color:#1f2937}"
    "table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;"
    "text-align:right}th{background:#f3f4f6}td:first-child,th:first-child{text-align:left}"
    "td:last-child,th:last-child{text-align:left}.reading{font-size:17px;max-width:900px}"
    ".provenance{border:1px solid #d1d5db;border-radius:6px;padding:10px 14px;margin:12px 0}"
    ".provenance dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:8px 0 0}"
    ".provenance dt{color:#6b7280}.provenance dd{margin:0;font-family:monospace}"
    ".badge{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:bold;"
    "font-size:13px;letter-spacing:.05em}"
    ".badge.real{background:#dcfce7;color:#166534}.badge.synthetic{background:#fde68a;color:#92400e}"
    ".badge.served{background:#dbeafe;color:#1e40af}"
    ".caption{color:#4b5563;max-width:900px}.warning{background:#fef3c7;padding:6px 10px}"
)
VERSION_FIELD = re.compile(r'(<dd data-field="model-version">)(.*?)(</dd>)', re.DOTALL)


def pyplot() -> Any:
    """matplotlib.pyplot, drawing off screen; imported on first use, as most steps draw nothing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_to_html(fig: Figure, alt: str = "") -> str:
    plt = pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"/>'


def table_html(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:,.4f}", border=0)


def paragraph(text: str, css: str = "caption") -> str:
    return f'<p class="{css}">{html.escape(text)}</p>'


def badge(provenance: Provenance) -> str:
    css = {"REAL DATA": "real", "SYNTHETIC DATA": "synthetic"}.get(provenance.kind, "served")
    return f'<span class="badge {css}" data-kind="{css}">{provenance.kind}</span>'


def header(title: str, provenance: Provenance) -> str:
    """The title, the data-kind badge and the provenance facts."""
    rows = "".join(
        f"<dt>{html.escape(name)}</dt>"
        f'<dd data-field="{name.replace(" ", "-")}">{html.escape(value)}</dd>'
        for name, value in provenance.facts()
    )
    notice = paragraph(provenance.notice, "warning") if provenance.notice else ""
    return (
        f'<header class="provenance" data-provenance>{badge(provenance)}'
        f"<h1>{html.escape(title)}</h1>{notice}<dl>{rows}</dl></header>"
    )


def page(
    title: str, provenance: Provenance, sections: list[tuple[str, str]], intro: str = ""
) -> str:
    body = "".join(f"<h2>{html.escape(h)}</h2>{content}" for h, content in sections)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{header(title, provenance)}{intro}{body}</body></html>"
    )


def with_header(document: str, title: str, provenance: Provenance, intro: str = "") -> str:
    """A page made elsewhere (Evidently's) with the provenance header and `intro` put first."""
    top = f"<style>{STYLE}</style>{header(title, provenance)}{intro}"
    titled = re.sub(
        r"<title>.*?</title>", f"<title>{html.escape(title)}</title>", document, count=1
    )
    found = re.search(r"<body[^>]*>", titled)
    if found is None:
        return page(title, provenance, [], intro + document)
    return titled[: found.end()] + top + titled[found.end() :]


def stamp_version(document: str, version: str) -> str:
    """The report with its model-version field set, once the register step knows it."""
    return VERSION_FIELD.sub(
        lambda m: m.group(1) + html.escape(version) + m.group(3), document, count=1
    )
