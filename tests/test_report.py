"""Reports as a user gets them: one self-contained HTML page rendered from real Markdown, the
numbers on the plots equal to those in the tables, readable axes, one unit for sizes.

The bench here is a real one (`bench_run` on the shipped default bundle: ONNX Runtime
latency at batch 1 and 2, one thread and all cores, and the device budget), kept small so the
module runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from edgebp.bench import plots  # noqa: E402
from edgebp.bench.latency import latency_measure  # noqa: E402
from edgebp.bench.report import UNITS_LINE, _spread, bench_write, summary_rows  # noqa: E402
from edgebp.plot.clinical import plot_bland_altman, plot_latency_hist  # noqa: E402
from edgebp.plot.report import mapping_table, report_write  # noqa: E402


class _Page(HTMLParser):
    """Every <img src>, every href/src attribute, the text outside tags, and the tag counts."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.refs: list[str] = []
        self.text: list[str] = []
        self.tags: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]

    def handle_data(self, data):
        self.text.append(data)


def _parse(path) -> _Page:
    p = _Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def _assert_self_contained(page: _Page, n_figures: int) -> None:
    assert len(page.imgs) == n_figures > 0
    for src in page.refs:  # nothing the page needs lives in another file
        assert src.startswith("data:") or src.startswith("#"), src[:80]
    for src in page.imgs:
        head, _, data = src.partition(",")
        assert head == "data:image/png;base64", head
        raw = base64.b64decode(data, validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(io.BytesIO(raw)) as im:
            im.verify()  # the whole PNG decodes (CRCs, chunks)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A real small bench of the shipped bundle, written as a report."""
    from edgebp.bench.suite import BenchConfig, bench_run

    out = tmp_path_factory.mktemp("bench16")
    cfg = BenchConfig(bundles=["default"], variants=["ort-int8"], quick=True, repeat=3, batch=2,
                      parts=["latency", "memory"], anchors=[], report_dir=str(out), cache_dir=str(out / "cache"),
                      command="edgebp bench default --parts latency,memory --quick")
    result, pairs = bench_run(cfg)
    assert result["errors"] == []
    paths = bench_write(out / "report", result, pairs)
    return {"bench": result, "paths": paths}


def test_bench_html_is_self_contained(bench, tmp_path):
    paths = bench["paths"]
    # copied alone, the page still shows every figure: every image is inside it
    alone = tmp_path / "report.html"
    alone.write_bytes(paths["html"].read_bytes())
    _assert_self_contained(_parse(alone), len(paths["figures"]))
    # the embedded images are the very PNG files written beside report.md
    page = _parse(alone)
    embedded = sorted(base64.b64decode(s.partition(",")[2]) for s in page.imgs)
    assert embedded == sorted(p.read_bytes() for p in paths["figures"])


def test_bench_markdown_is_rendered(bench):
    paths = bench["paths"]
    page = _parse(paths["html"])
    text = "".join(page.text)
    assert "**" not in text and "`" not in text  # no raw Markdown emphasis or code marks
    assert page.tags.get("code", 0) >= 3  # the commands in the method section are code spans
    md = paths["markdown"].read_text()
    assert md.count("`") >= 6  # ... written as Markdown in report.md
    # every Markdown table is an HTML table (header + separator line per table in report.md)
    n_tables = len(re.findall(r"^\|(?:---\|)+$", md, flags=re.M))
    assert n_tables >= 4 and page.tags.get("table", 0) == n_tables
    assert "| model / variant |" in md  # the summary is a table ...
    assert not re.search(r"^\s*[{\[]\s*\"", md, flags=re.M)  # ... and no JSON dump anywhere


def test_report_write_renders_markdown_and_embeds(tmp_path):
    fig = plot_bland_altman([121.0, 118.0, 133.0, 140.0], [120.0, 120.0, 130.0, 141.0])
    out = report_write(tmp_path, "t", [
        {"heading": "Summary", "text": "Run `edgebp run default` for **the deployed** model.\n\n- one\n- two",
         "table": mapping_table({"model": {"kind": "edge-tcn", "inputs": ["ecg", "ppg"]}, "fs": 125})},
        {"heading": "Literal cells", "table": [["cell", "value"], ["*not emphasis*", "`not code`"], ["a|b", "_x_"]]},
        {"heading": "Agreement", "figure": fig}])
    page = _parse(out.html)
    _assert_self_contained(page, 1)
    html = out.html.read_text()
    assert "<code>edgebp run default</code>" in html and "<strong>the deployed</strong>" in html
    assert "<li>one</li>" in html and html.count("<table>") == 2
    assert "<td>model.inputs</td>" in html and "<td>ecg, ppg</td>" in html and "<td>125</td>" in html
    # data in a cell is shown as it is, never interpreted as Markdown
    assert "<td>*not emphasis*</td>" in html and "<td>`not code`</td>" in html
    assert "<td>a|b</td>" in html and "<td>_x_</td>" in html


def test_mapping_table_flattens_nested_summary():
    rows = mapping_table({"model": {"name": "edge-tcn", "inputs": ["ecg", "ppg"], "norm": {"fs": 125.0}},
                          "records": [{"id": "a"}, {"id": "b"}], "n": None})
    assert rows == [["item", "value"], ["model.name", "edge-tcn"], ["model.inputs", "ecg, ppg"], ["model.norm.fs", "125"],
                    ["records[0].id", "a"], ["records[1].id", "b"], ["n", "-"]]


def test_plot_medians_equal_the_tables(bench):
    b = bench["bench"]
    series = plots.latency_series(b)
    assert len(series) >= 2
    fig = plots.plot_latency_box(b)
    ax = fig.axes[0]
    notes = [t.get_text() for t in ax.texts if t.get_gid() == "median_text"]
    medians = [ln for ln in ax.lines if ln.get_gid() == "median"]
    table = {row[0]: row for row in summary_rows(b)}
    for (label, _key, samples, row), note, med in zip(series, notes, medians):
        cell = _spread(row["p50_ms"]).split(" ")[0]  # the latency table's "median [min-max]"
        assert note == f"{cell} ms"
        assert med.get_xdata()[0] == pytest.approx(row["p50_ms"]["median"], rel=1e-12)
        name = label.replace(" step", " (step)")
        if name in table and row["kind"] == "stream-step":
            assert table[name][2] == cell  # and the summary table's p50 column
        hist = plot_latency_hist(samples, label, marks={"p50": plots.latency_p50(row), "p99": plots.latency_p99(row)})
        lines = {ln.get_gid(): ln.get_xdata()[0] for ln in hist.axes[0].lines}
        assert lines["p50"] == row["p50_ms"]["median"] and lines["p99"] == row["p99_ms"]["median"]


def test_pooled_median_is_not_the_table_median():
    """Why the plot and the table disagreed: repeats time different numbers of calls, so the
    median of all calls pooled leans to the fastest repeat, while the table prints the median
    of the repeats' own p50s. Three repeats of three real workloads (1x, 16x, 256x the work),
    each timed for the same 0.05 s: the fast one gets the most calls. (The steps were 4x, and
    a loaded machine once gave the cheap repeat only 1.9x the calls of the dearest: 573 vs
    300, when its warm-up calls ran slow; 16x steps leave room for that.)"""
    def make(r):
        a = np.ones(20_000 * 16 ** r)
        return lambda: float(np.sum(a * a))

    res = latency_measure(make=make, warmup=2, repeats=3, target_s=0.05, min_runs=5, max_runs=5000)
    ns = [rep["n"] for rep in res["repeats"]]
    assert ns[0] > 2 * ns[2]  # measured: the cheap repeat timed several times as many calls
    pooled = float(np.median(res["samples_ms"]))
    table = res["p50_ms"]["median"]  # the middle repeat's p50
    assert pooled < 0.8 * table  # pooled: in the cheap repeat's range
    row = {"variant": "ort-int8", "kind": "window", "batch": 1, "threads": 1, **res}
    fig = plots.plot_latency_box({"bundles": [{"name": "m", "latency": [row]}], "anchors": [], "settings": {"threads": 1}})
    (note,) = [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "median_text"]
    assert note == f"{plots.figure_number(table)} ms" != f"{plots.figure_number(pooled)} ms"


def _no_overlap(fig):
    fig.canvas.draw()
    for ax in fig.axes:
        for which in ("x", "y"):
            labs = plots.tick_labels(ax, which)
            assert plots.overlapping(fig, labs, pad=0.0, layout=False) == [], (which, [t.get_text() for t in labs])
        points = [t for t in ax.texts if t.get_gid() == "point_label"]
        assert plots.overlapping(fig, points, pad=0.0, layout=False) == [], [t.get_text() for t in points]
        r = fig.canvas.get_renderer()
        box = ax.get_window_extent(r)
        for t in points:  # and each stays inside its panel
            e = t.get_window_extent(r)
            assert box.x0 <= e.x0 and e.x1 <= box.x1, t.get_text()


def _acc(mae_s, mae_d):
    return {"sbp": {"mae": mae_s}, "dbp": {"mae": mae_d}, "baselines": {"training_mean": {"sbp": {"mae": 24.6}, "dbp": {"mae": 12.2}}}}


def test_pareto_narrow_log_axis_is_readable():
    """The smear of the report: x from 9.72 to 10.24 us per output sample and 57-99 KiB (the
    demo bench's measured figures, edge-tcn int8 / fp32 / stream int8), three labels close
    together. Before the fix every minor tick was labelled 9.7x10^0, 9.8x10^0 ... over each
    other and the right-hand label ran out of the panel."""
    lat = [{"variant": v, "kind": k, "batch": 1, "threads": 1, "per_output_sample_us": us}
           for v, k, us in (("ort-int8", "window", 9.72), ("ort-fp32", "window", 10.24), ("ort-int8", "stream-step", 9.72))]
    b = {"settings": {"threads": 1}, "bundles": [{"name": "edge-tcn/edge", "latency": lat,
         "files": {"int8": {"bytes": 58_368}, "fp32": {"bytes": 101_376}, "stream_int8": {"bytes": 85_504}},
         "accuracy": {"ort-int8": _acc(30.85, 10.10), "ort-fp32": _acc(30.00, 10.40), "stream-int8": _acc(29.83, 10.48)}}]}
    for x in ("latency", "size"):
        fig = plots.plot_pareto(b, x)
        assert len([c for c in fig.axes[0].collections if c.get_gid() == "point"]) == 3
        _no_overlap(fig)
        labels = [t.get_text() for t in plots.tick_labels(fig.axes[0], "x")]
        assert 2 <= len(labels) <= 6 and not any("times" in t or "^" in t for t in labels), labels
    # sizes are drawn in KiB: round KiB ticks
    fig = plots.plot_pareto(b, "size")
    assert fig.axes[0].get_xlabel().startswith("model file size (KiB")
    assert [t.get_text() for t in plots.tick_labels(fig.axes[0], "x")] == ["60", "80", "100"]


def test_bench_plots_ticks_do_not_overlap(bench):
    b = bench["bench"]
    for fig in (plots.plot_latency_box(b), plots.plot_rtf(b)):
        _no_overlap(fig)


def test_units_stated_once_and_binary(bench):
    md = bench["paths"]["markdown"].read_text()
    assert md.count(UNITS_LINE) == 1
    assert "KiB" in md and not re.search(r"\d (kB|KB|MB|GB)\b", md)
