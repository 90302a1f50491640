"""Plots and the report writer: check what is drawn, not just that something was drawn."""

from __future__ import annotations

import doctest
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (only to prove no pyplot figures are created)
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import edgebp.plot.clinical as clinical  # noqa: E402
import edgebp.plot.report as report_mod  # noqa: E402
from edgebp.plot.clinical import (  # noqa: E402
    plot_bland_altman,
    plot_error_cdf,
    plot_latency_hist,
    plot_scatter,
    plot_waveforms,
)
from edgebp.plot.report import report_write  # noqa: E402

# Reference around 120-150 and differences of a few mmHg: means and differences live in
# different ranges, so swapped axes cannot pass unnoticed.
REF = np.array([120.0, 130.0, 140.0, 150.0])
PRED = REF + np.array([2.0, -2.0, 4.0, 0.0])
# Differences 2, -2, 4, 0: bias 1; deviations 1, -3, 3, -1 -> squares sum 20 -> SD sqrt(20/3)
# (ddof=1) = 2.58199; limits of agreement 1 +/- 1.96 * 2.58199 = 6.06070 and -4.06070.
BIAS = 1.0
SD = math.sqrt(20.0 / 3.0)


def _line(ax, gid):
    found = [ln for ln in ax.lines if ln.get_gid() == gid]
    assert len(found) == 1, f"expected one line with gid {gid!r}"
    return found[0]


def _collection(ax, gid):
    found = [c for c in ax.collections if c.get_gid() == gid]
    assert len(found) == 1, f"expected one collection with gid {gid!r}"
    return found[0]


def test_bland_altman_axes_are_mean_and_difference():
    fig = plot_bland_altman(PRED, REF, label="SBP")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    offsets = _collection(ax, "points").get_offsets()
    # x = (pred + ref) / 2 = 121, 129, 142, 150; y = pred - ref = 2, -2, 4, 0.
    np.testing.assert_allclose(offsets[:, 0], [121.0, 129.0, 142.0, 150.0])
    np.testing.assert_allclose(offsets[:, 1], [2.0, -2.0, 4.0, 0.0])
    assert ax.get_xlabel() == "mean of estimate and reference SBP (mmHg)"
    assert ax.get_ylabel() == "estimate - reference SBP (mmHg)"


def test_bland_altman_limits_of_agreement():
    ax = plot_bland_altman(PRED, REF).axes[0]
    np.testing.assert_allclose(_line(ax, "bias").get_ydata(), [BIAS, BIAS])
    np.testing.assert_allclose(_line(ax, "loa_upper").get_ydata(), [BIAS + 1.96 * SD] * 2)
    np.testing.assert_allclose(_line(ax, "loa_lower").get_ydata(), [BIAS - 1.96 * SD] * 2)
    assert BIAS + 1.96 * SD == pytest.approx(6.0607, abs=1e-4)
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "bias +1.0" in texts and "+1.96 SD +6.1" in texts and "-1.96 SD -4.1" in texts


def test_bland_altman_nan_pairs_left_out_and_said():
    pred = np.append(PRED, np.nan)
    ref = np.append(REF, 135.0)
    ax = plot_bland_altman(pred, ref).axes[0]
    assert _collection(ax, "points").get_offsets().shape == (4, 2)
    assert "1 NaN pairs left out" in ax.get_title()


def test_bland_altman_on_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_bland_altman(PRED, REF, ax=ax, label="DBP") is fig
    assert "DBP" in ax.get_ylabel()


def test_scatter_pred_against_ref():
    ax = plot_scatter(PRED, REF, label="DBP").axes[0]
    offsets = _collection(ax, "points").get_offsets()
    np.testing.assert_allclose(offsets[:, 0], REF)  # x = reference
    np.testing.assert_allclose(offsets[:, 1], PRED)  # y = estimate
    ident = _line(ax, "identity")
    np.testing.assert_allclose(ident.get_xdata(), ident.get_ydata())
    assert ax.get_xlabel() == "reference DBP (mmHg)" and ax.get_ylabel() == "estimate DBP (mmHg)"
    r = np.corrcoef(PRED, REF)[0, 1]
    assert f"r = {r:.3f}" in ax.get_title()


def test_error_cdf_curve_and_bhs_lines():
    ax = plot_error_cdf(PRED, REF).axes[0]
    cdf = _line(ax, "cdf")
    # |errors| 2, 2, 4, 0 sorted -> 0, 2, 2, 4; curve from (0, 0) stepping 25 % per reading.
    np.testing.assert_allclose(cdf.get_xdata(), [0.0, 0.0, 2.0, 2.0, 4.0])
    np.testing.assert_allclose(cdf.get_ydata(), [0.0, 25.0, 50.0, 75.0, 100.0])
    assert cdf.get_drawstyle() == "steps-post"
    for t in (5, 10, 15):
        np.testing.assert_allclose(_line(ax, f"bhs_{t}").get_xdata(), [t, t])
    req_a = _line(ax, "bhs_req_A")
    np.testing.assert_allclose(req_a.get_xdata(), [5, 10, 15])
    np.testing.assert_allclose(req_a.get_ydata(), [60, 85, 95])
    np.testing.assert_allclose(_line(ax, "bhs_req_C").get_ydata(), [40, 65, 85])
    assert "cumulative share" in ax.get_ylabel() and "|estimate - reference|" in ax.get_xlabel()
    assert "BHS grade A" in ax.get_title()  # 100 % within 5 mmHg


def test_waveforms_panels_and_data():
    t = np.arange(100) / 125.0
    ref = 100 + 20 * np.sin(2 * np.pi * t)
    pred = ref + 1.0
    ppg = np.cos(t)
    ecg = np.sin(5 * t)
    fig = plot_waveforms(t, ref, pred, ppg=ppg, ecg=ecg)
    assert len(fig.axes) == 3
    np.testing.assert_array_equal(_line(fig.axes[0], "ref_abp").get_ydata(), ref)
    np.testing.assert_array_equal(_line(fig.axes[0], "pred_abp").get_ydata(), pred)
    np.testing.assert_array_equal(_line(fig.axes[1], "ppg").get_ydata(), ppg)
    np.testing.assert_array_equal(_line(fig.axes[2], "ecg").get_xdata(), t)
    assert fig.axes[0].get_ylabel() == "ABP (mmHg)" and fig.axes[2].get_xlabel() == "time (s)"
    assert len(plot_waveforms(t, ref, pred).axes) == 1
    with pytest.raises(ValueError, match="ppg"):
        plot_waveforms(t, ref, pred, ppg=ppg[:-1])


def test_latency_hist_percentiles():
    lat = np.arange(1, 101, dtype=float)  # 1..100 ms; numpy's linear percentiles: 50.5, 95.05, 99.01
    ax = plot_latency_hist(lat, "ort").axes[0]
    np.testing.assert_allclose(_line(ax, "p50").get_xdata(), [50.5, 50.5])
    np.testing.assert_allclose(_line(ax, "p95").get_xdata(), [95.05, 95.05])
    np.testing.assert_allclose(_line(ax, "p99").get_xdata(), [99.01, 99.01])
    assert ax.get_xlabel() == "latency (ms)"
    assert sum(p.get_height() for p in ax.patches) == 100


def test_plots_reject_empty():
    with pytest.raises(ValueError, match="no pair"):
        plot_bland_altman([np.nan], [120.0])


def test_no_pyplot_figures_created():
    before = plt.get_fignums()
    plot_bland_altman(PRED, REF)
    plot_scatter(PRED, REF)
    plot_error_cdf(PRED, REF)
    plot_latency_hist([1.0, 2.0], "x")
    plot_waveforms(np.arange(4.0), REF, PRED)
    assert plt.get_fignums() == before


# ------------------------------------------------------------------ report
def test_report_write_md_html_and_png(tmp_path):
    fig = plot_bland_altman(PRED, REF)
    sections = [
        {"heading": "Summary <SBP>", "text": "Grade A & pass.\n\n- first point\n- second <b>point</b>",
         "table": [["metric", "model", "naive"], ["MAE", 2.0, 13.5], ["grade", "A", "D|x"]]},
        {"heading": "Agreement", "text": "```\nfixed   width\n```", "figure": fig,
         "figure_name": "bland_altman_sbp"},
    ]
    out = report_write(tmp_path / "rep", "Report <1>", sections)
    assert out.markdown == tmp_path / "rep" / "report.md" and out.html == tmp_path / "rep" / "report.html"
    assert out.figures == [tmp_path / "rep" / "bland_altman_sbp.png"]
    assert out.figures[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    md = out.markdown.read_text()
    assert md.startswith("# Report <1>\n")
    assert "| metric | model | naive |" in md and "| MAE | 2 | 13.5 |" in md
    assert "D\\|x" in md  # a pipe inside a cell is escaped
    assert "![Agreement](bland_altman_sbp.png)" in md  # relative path

    page = out.html.read_text()
    assert "<title>Report &lt;1&gt;</title>" in page
    assert "<h2>Summary &lt;SBP&gt;</h2>" in page
    assert "Grade A &amp; pass." in page
    assert "<li>second &lt;b&gt;point&lt;/b&gt;</li>" in page  # raw HTML in the text is escaped
    assert "<b>" not in page
    assert "<th>metric</th>" in page and "<td>13.5</td>" in page and "<td>D|x</td>" in page
    # the figure is inside the page (the same bytes as the PNG file), not a file reference
    assert '<img src="bland_altman_sbp.png"' not in page
    assert 'src="data:image/png;base64,' in page
    assert "<pre><code>fixed   width\n</code></pre>" in page
    assert str(tmp_path) not in page  # no absolute paths


def test_report_write_rejects_bad_sections(tmp_path):
    fig = plot_scatter(PRED, REF)
    with pytest.raises(ValueError, match="unknown key"):
        report_write(tmp_path, "t", [{"heading": "h", "image": fig}])
    with pytest.raises(ValueError, match="heading"):
        report_write(tmp_path, "t", [{"text": "no heading"}])
    with pytest.raises(ValueError, match="figure_name must be a string"):
        report_write(tmp_path, "t", [{"heading": "h", "figure": fig, "figure_name": 3}])
    with pytest.raises(ValueError, match="also used"):
        report_write(tmp_path, "t", [{"heading": "a", "figure": fig, "figure_name": "f"},
                                     {"heading": "b", "figure": fig, "figure_name": "f.png"}])


def test_report_figure_name_cannot_leave_out_dir(tmp_path):
    # "../x y" -> '/' and ' ' become '_' -> ".._x_y" -> leading dots/underscores dropped -> "x_y".
    out = report_write(tmp_path / "r", "t", [{"heading": "h", "figure": plot_scatter(PRED, REF),
                                              "figure_name": "../x y"}])
    assert out.figures == [tmp_path / "r" / "x_y.png"] and out.figures[0].exists()
    assert not (tmp_path / "x y.png").exists()


def test_error_cdf_from_errors_alone():
    # Same errors as PRED - REF (2, -2, 4, 0) given directly: the same curve.
    ax = plot_error_cdf(PRED - REF, label="DBP").axes[0]
    np.testing.assert_allclose(_line(ax, "cdf").get_xdata(), [0.0, 0.0, 2.0, 2.0, 4.0])
    assert "DBP" in ax.get_xlabel()


def test_report_default_figure_name(tmp_path):
    out = report_write(tmp_path, "t", [{"heading": "Error CDF (SBP)", "figure": plot_error_cdf(PRED, REF)}])
    assert [p.name for p in out.figures] == ["fig01-error-cdf-sbp.png"]


def test_docstring_examples_run():
    for mod in (clinical, report_mod):
        result = doctest.testmod(mod)
        assert result.attempted > 0 and result.failed == 0, mod.__name__
