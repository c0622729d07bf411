"""One self-contained HTML page from the report's data: the template with its script, styles, uPlot and data inlined.

    python -c "from ftkit.report.page import render; print(len(render([])))"

Nothing is fetched when the page opens (no CDN, no font, no image), so it works offline, attached to a
mail, or from a run folder on a machine without network.
"""

from __future__ import annotations

import json
import math
import time
from functools import cache
from pathlib import Path
from typing import Any

from ftkit.report.folders import recipe_diff

ASSETS = Path(__file__).parent / "assets"


@cache
def _assets() -> dict[str, str]:
    read = lambda name: (ASSETS / name).read_text(encoding="utf-8")  # noqa: E731
    return {"template": read("report.html"), "css": read("report.css"), "js": read("report.js"),
            "uplot_js": read("uplot/uPlot.iife.min.js"), "uplot_css": read("uplot/uPlot.min.css")}


def render(runs: list[dict[str, Any]]) -> str:
    """The page for `runs` (each from `ftkit.report.folders.read_folder`)."""
    runs = _distinct_names(runs)
    payload = {"generated": time.time(), "runs": runs, "diff": recipe_diff(runs) if len(runs) > 1 else []}
    a = _assets()
    parts = {
        "/*FTKIT:TITLE*/": "ftkit report: " + ", ".join(_escape_html(r["name"]) for r in runs),
        "/*FTKIT:UPLOT_CSS*/": a["uplot_css"], "/*FTKIT:CSS*/": a["css"],
        "/*FTKIT:DATA*/": embed_json(payload), "/*FTKIT:UPLOT_JS*/": a["uplot_js"], "/*FTKIT:JS*/": a["js"],
    }
    page, start = a["template"], 0
    for marker, text in parts.items():  # in template order, each searched after the text inserted before it
        at = page.index(marker, start)
        page = page[:at] + text + page[at + len(marker):]
        start = at + len(text)
    return page


def _distinct_names(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs that share a name (a copied folder, the same recipe twice) are told apart by their folders."""
    names = [r["name"] for r in runs]
    if len(set(names)) == len(names):
        return runs
    folders = [Path(r["path"]).name for r in runs]
    labels = folders if len(set(folders)) == len(folders) else [r["path"] for r in runs]
    return [{**r, "name": label} for r, label in zip(runs, labels)]


def embed_json(obj: Any) -> str:
    """JSON that is safe inside <script type="application/json">: no `<` that could end the script early."""
    try:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:  # NaN or infinity somewhere: JSON has neither, and JSON.parse would reject the page
        text = json.dumps(_finite(obj), separators=(",", ":"), ensure_ascii=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _escape_html(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
