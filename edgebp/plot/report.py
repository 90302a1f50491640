"""Write a report as Markdown and as one self-contained HTML page, with tables and figures.

``report.md`` is the source: section text is Markdown (lists, ``code``, **bold**, fenced
blocks), tables are Markdown tables and figures are PNG files beside it, referenced by
relative paths. ``report.html`` is that same Markdown rendered by a real CommonMark renderer
(markdown-it-py, with its table extension; raw HTML in the text is escaped, not passed
through), with every figure embedded as a base64 ``data:image/png`` URI, so the page alone can
be copied, mailed or attached and still shows every plot.

Examples
--------
>>> import tempfile
>>> from edgebp.plot.report import report_write
>>> out = report_write(tempfile.mkdtemp(), "Demo", [
...     {"heading": "Result", "text": "SBP grade **A**.", "table": [["metric", "value"], ["MAE", 4.2]]}])
>>> out.markdown.name, out.html.name, out.figures
('report.md', 'report.html', [])
>>> "<strong>A</strong>" in out.html.read_text()
True
"""

from __future__ import annotations

import base64
import html
import io
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

logger = logging.getLogger(__name__)

SECTION_KEYS = ("heading", "text", "table", "figure", "figure_name")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Markdown-active characters a table cell must show literally. "_" only at a word edge:
# intraword underscores (model_int8.onnx) never start emphasis in CommonMark, and escaping
# them would clutter report.md. "&" only where it would start an entity reference.
_MD_ACTIVE = re.compile(r"[\\`*\[\]|]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])|&(?=#?\w+;)")

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 980px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; display: block; overflow-x: auto; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f0f0; }
code { background: #f3f3f3; padding: 0 0.2em; font-size: 0.9em; }
pre { background: #f7f7f7; padding: 0.7em; overflow-x: auto; font-size: 0.88em; }
pre code { background: none; padding: 0; }
img { max-width: 100%; }
"""


class ReportPaths(NamedTuple):
    """Where :func:`report_write` wrote the report."""

    markdown: Path
    html: Path
    figures: list[Path]


def _markdown_renderer():
    # Imported here: only writing a report needs it, not reading this module.
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table")


def markdown_to_html(text: str) -> str:
    """Markdown (CommonMark plus tables) to an HTML fragment; raw HTML in ``text`` is escaped.

    Examples
    --------
    >>> markdown_to_html("use `edgebp run` <now>")
    '<p>use <code>edgebp run</code> &lt;now&gt;</p>\\n'
    """
    return _markdown_renderer().render(text)


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return s or "figure"


def _figure_file(section: dict, index: int) -> str:
    given = section.get("figure_name") or f"fig{index + 1:02d}-{_slug(section['heading'])}"
    if not isinstance(given, str):
        raise ValueError(f"section {index} ({section['heading']!r}): figure_name must be a string")
    name = given
    if not _SAFE_NAME.match(name):
        # A record id with '/' or spaces must not abort a long evaluation, nor write outside
        # out_dir: keep letters, digits, '.', '_', '-' and never start with a dot.
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip("._-") or f"fig{index + 1:02d}"
        logger.warning("figure_name %r is not a plain file name; writing %r", given, name)
    return name if name.lower().endswith(".png") else name + ".png"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def md_escape(text: str) -> str:
    """``text`` as Markdown that renders to exactly ``text`` (table cells, alt text).

    Examples
    --------
    >>> md_escape("a|b *c* model_int8.onnx _x_")
    'a\\\\|b \\\\*c\\\\* model_int8.onnx \\\\_x\\\\_'
    """
    return _MD_ACTIVE.sub(lambda m: "\\" + m.group(0), text)


def mapping_table(data: Mapping, header: Sequence[str] = ("item", "value")) -> list[list[str]]:
    """A two-column table (header first) of a nested mapping: nested keys are joined with
    ``.``, lists of scalars with ``, ``; for a summary that reads as a table, not a JSON dump.

    Examples
    --------
    >>> mapping_table({"kind": "edge-tcn", "inputs": ["ecg", "ppg"], "norm": {"fs": 125}})
    [['item', 'value'], ['kind', 'edge-tcn'], ['inputs', 'ecg, ppg'], ['norm.fs', '125']]
    """
    rows: list[list[str]] = [list(header)]

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, Mapping) and v:
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        elif isinstance(v, (list, tuple)) and all(not isinstance(x, (Mapping, list, tuple)) for x in v):
            rows.append([prefix, ", ".join(_cell(x) for x in v) or "-"])
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                walk(f"{prefix}[{i}]", x)
        else:
            rows.append([prefix, _cell(v)])

    walk("", data)
    return rows


def _check_sections(sections: Sequence[dict]) -> None:
    for i, sec in enumerate(sections):
        if not isinstance(sec, dict):
            raise ValueError(f"section {i}: expected a dict with keys {', '.join(SECTION_KEYS)}")
        unknown = sorted(set(sec) - set(SECTION_KEYS))
        if unknown:
            raise ValueError(f"section {i}: unknown key(s) {', '.join(unknown)}; "
                             f"valid: {', '.join(SECTION_KEYS)}")
        if not isinstance(sec.get("heading"), str) or not sec["heading"].strip():
            raise ValueError(f"section {i}: 'heading' must be a non-empty string")
        table = sec.get("table")
        if table is not None:
            if not isinstance(table, (list, tuple)) or not table or not all(
                isinstance(row, (list, tuple)) for row in table
            ):
                raise ValueError(f"section {i} ({sec['heading']!r}): 'table' must be a non-empty "
                                 "list of rows (lists); the first row is the header")
        fig = sec.get("figure")
        if fig is not None and not hasattr(fig, "savefig"):
            raise ValueError(f"section {i} ({sec['heading']!r}): 'figure' must be a matplotlib Figure")


def _md_cell(value: Any) -> str:
    return md_escape(_cell(value).replace("\n", " "))


def _md_table(table: Sequence[Sequence]) -> list[str]:
    width = max(len(r) for r in table)
    rows = [list(r) + [""] * (width - len(r)) for r in table]
    lines = ["| " + " | ".join(_md_cell(c) for c in rows[0]) + " |",
             "|" + "|".join(["---"] * width) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows[1:]]
    return lines


def _heading(text: str) -> str:
    # One line, and a leading '#' or trailing '#'s must stay text, not change the level.
    return md_escape(" ".join(text.split())).replace("#", "\\#")


def _embed_images(tokens: list, images: dict[str, bytes]) -> None:
    """Point every image token that names one of ``images`` at a base64 data URI of its bytes."""
    for tok in tokens:
        for child in tok.children or []:
            if child.type == "image":
                src = child.attrGet("src")
                if src in images:
                    child.attrSet("src", "data:image/png;base64," + base64.b64encode(images[src]).decode("ascii"))
                else:  # never a dangling file reference in the self-contained page
                    logger.warning("report image %r is not one of the report's figures; left as written", src)


def report_write(out_dir: str | Path, title: str, sections: Sequence[dict], dpi: int = 120) -> ReportPaths:
    """Write ``report.md`` (PNG figures beside it) and a self-contained ``report.html`` into ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        Created if needed. Existing ``report.*`` and same-named PNGs are overwritten.
    title : str
        Report title.
    sections : list of dict
        Each ``{"heading": str, "text": str, "table": list[list] | None,
        "figure": Figure | None, "figure_name": str}``; only ``heading`` is required. ``text``
        is Markdown. The table's first row is its header; cells are shown literally (Markdown
        characters in them are escaped). ``figure_name`` is a plain file name (``.png`` added
        when missing; default from the heading); names must be unique.
    dpi : int
        Resolution of the PNG files.

    Returns
    -------
    ReportPaths
        ``(markdown, html, figures)`` paths. The HTML holds every figure as a data URI (the
        same PNG bytes as the file) and refers to no other file.

    Examples
    --------
    >>> import tempfile
    >>> from edgebp.plot.clinical import plot_bland_altman
    >>> fig = plot_bland_altman([121.0, 118.0, 133.0], [120.0, 120.0, 130.0])
    >>> out = report_write(tempfile.mkdtemp(), "SBP", [
    ...     {"heading": "Agreement", "figure": fig, "figure_name": "bland_altman_sbp"}])
    >>> [p.name for p in out.figures]
    ['bland_altman_sbp.png']
    >>> 'src="data:image/png;base64,' in out.html.read_text()
    True
    """
    _check_sections(sections)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    names: dict[int, str] = {}
    owner: dict[str, int] = {}
    for i, sec in enumerate(sections):
        if sec.get("figure") is not None:
            name = _figure_file(sec, i)
            if name.lower() in owner:
                raise ValueError(f"section {i} ({sec['heading']!r}): figure file {name!r} is also used "
                                 f"by section {owner[name.lower()]}")
            owner[name.lower()] = i
            names[i] = name

    md = [f"# {_heading(title)}", ""]
    figures: list[Path] = []
    images: dict[str, bytes] = {}
    for i, sec in enumerate(sections):
        heading = sec["heading"]
        md += [f"## {_heading(heading)}", ""]
        text = sec.get("text")
        if text:
            md += [text.rstrip(), ""]
        table = sec.get("table")
        if table is not None:
            md += _md_table(table) + [""]
        fig = sec.get("figure")
        if fig is not None:
            name = names[i]
            buf = io.BytesIO()
            fig.savefig(buf, dpi=dpi, format="png")
            # one rendering, written to the file and embedded in the page: the same bytes
            images[name] = buf.getvalue()
            path = out / name
            path.write_bytes(images[name])
            figures.append(path)
            md += [f"![{md_escape(heading)}]({name})", ""]

    source = "\n".join(md).rstrip() + "\n"
    md_path = out / "report.md"
    html_path = out / "report.html"
    md_path.write_text(source, encoding="utf-8")
    renderer = _markdown_renderer()
    env: dict = {}
    tokens = renderer.parse(source, env)
    _embed_images(tokens, images)
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + renderer.renderer.render(tokens, renderer.options, env)
        + "</body>\n</html>\n"
    )
    html_path.write_text(page, encoding="utf-8")
    logger.info("report written: %s, %s (%d figures, embedded in the HTML)", md_path, html_path, len(figures))
    return ReportPaths(md_path, html_path, figures)
