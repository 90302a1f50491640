"""Write a small report (Markdown and self-contained HTML) with tables and figures.

The figures are written as PNG files beside ``report.md`` / ``report.html`` and referenced by
relative paths, so the directory can be moved or zipped as a whole. All text is HTML-escaped.

Examples
--------
>>> import tempfile
>>> from edgebp.plot.report import report_write
>>> out = report_write(tempfile.mkdtemp(), "Demo", [
...     {"heading": "Result", "text": "SBP grade A.", "table": [["metric", "value"], ["MAE", 4.2]]}])
>>> out.markdown.name, out.html.name, out.figures
('report.md', 'report.html', [])
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

logger = logging.getLogger(__name__)

SECTION_KEYS = ("heading", "text", "table", "figure", "figure_name")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_BULLET = re.compile(r"^\s*[-*] ")

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 980px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f0f0; }
pre { background: #f7f7f7; padding: 0.7em; overflow-x: auto; font-size: 0.88em; }
figure { margin: 1em 0; } img { max-width: 100%; }
"""


class ReportPaths(NamedTuple):
    """Where :func:`report_write` wrote the report."""

    markdown: Path
    html: Path
    figures: list[Path]


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
    return _cell(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(table: Sequence[Sequence]) -> list[str]:
    width = max(len(r) for r in table)
    rows = [list(r) + [""] * (width - len(r)) for r in table]
    lines = ["| " + " | ".join(_md_cell(c) for c in rows[0]) + " |",
             "|" + "|".join(["---"] * width) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows[1:]]
    return lines


def _html_table(table: Sequence[Sequence]) -> str:
    width = max(len(r) for r in table)
    rows = [list(r) + [""] * (width - len(r)) for r in table]
    head = "".join(f"<th>{html.escape(_cell(c))}</th>" for c in rows[0])
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in r) + "</tr>" for r in rows[1:]
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _html_text(text: str) -> str:
    """Markdown-ish text: ``` fences -> <pre>, "- " lists -> <ul>, other blocks -> <p>."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    block: list[str] = []

    def flush() -> None:
        if not block:
            return
        if all(_BULLET.match(ln) for ln in block):
            items = "".join(f"<li>{html.escape(_BULLET.sub('', ln))}</li>" for ln in block)
            out.append(f"<ul>{items}</ul>")
        else:
            out.append("<p>" + "<br>\n".join(html.escape(ln) for ln in block) + "</p>")
        block.clear()

    while i < len(lines):
        line = lines[i]
        if line.strip().startswith("```"):
            flush()
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            out.append("<pre>" + html.escape("\n".join(lines[i + 1:j])) + "</pre>")
            i = j + 1
            continue
        if line.strip():
            block.append(line)
        else:
            flush()
        i += 1
    flush()
    return "\n".join(out)


def report_write(out_dir: str | Path, title: str, sections: Sequence[dict], dpi: int = 120) -> ReportPaths:
    """Write ``report.md`` and ``report.html`` (and one PNG per figure) into ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        Created if needed. Existing ``report.*`` and same-named PNGs are overwritten.
    title : str
        Report title.
    sections : list of dict
        Each ``{"heading": str, "text": str, "table": list[list] | None,
        "figure": Figure | None, "figure_name": str}``; only ``heading`` is required. The
        table's first row is its header. ``figure_name`` is a plain file name (``.png`` added
        when missing; default from the heading); names must be unique.
    dpi : int
        Resolution of the PNG files.

    Returns
    -------
    ReportPaths
        ``(markdown, html, figures)`` paths.

    Examples
    --------
    >>> import tempfile
    >>> from edgebp.plot.clinical import plot_bland_altman
    >>> fig = plot_bland_altman([121.0, 118.0, 133.0], [120.0, 120.0, 130.0])
    >>> out = report_write(tempfile.mkdtemp(), "SBP", [
    ...     {"heading": "Agreement", "figure": fig, "figure_name": "bland_altman_sbp"}])
    >>> [p.name for p in out.figures]
    ['bland_altman_sbp.png']
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

    md = [f"# {title}", ""]
    body = [f"<h1>{html.escape(title)}</h1>"]
    figures: list[Path] = []
    for i, sec in enumerate(sections):
        heading = sec["heading"]
        md += [f"## {heading}", ""]
        body.append(f"<h2>{html.escape(heading)}</h2>")
        text = sec.get("text")
        if text:
            md += [text.rstrip(), ""]
            body.append(_html_text(text))
        table = sec.get("table")
        if table is not None:
            md += _md_table(table) + [""]
            body.append(_html_table(table))
        fig = sec.get("figure")
        if fig is not None:
            name = names[i]
            path = out / name
            fig.savefig(path, dpi=dpi, format="png")
            figures.append(path)
            md += [f"![{heading}]({name})", ""]
            body.append(f'<figure><img src="{html.escape(name, quote=True)}" '
                        f'alt="{html.escape(heading, quote=True)}">'
                        f"<figcaption>{html.escape(heading)}</figcaption></figure>")

    md_path = out / "report.md"
    html_path = out / "report.html"
    md_path.write_text("\n".join(md).rstrip() + "\n", encoding="utf-8")
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
    html_path.write_text(page, encoding="utf-8")
    logger.info("report written: %s, %s (%d figures)", md_path, html_path, len(figures))
    return ReportPaths(md_path, html_path, figures)
