"""glode/plots.py: plots a user can see offline (issue 24): the report's static figures, the page
template with inline JavaScript, and the `dvc plots show` page drawn by headless Chromium with
networking disabled (the training-curve logs are glode/training.py's, tested in test_training.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from glode.atomic import write_json
from glode.plots import figure_specs, plots_page_template, write_figures
from glode.steps.report import flip_rows, write_round_report
from glode.rounds import rewrite_rounds
from glode.training import write_logs
from tests.params_fixture import write_params
from tests.round_outputs import history, metrics_dir

ROOT = Path(__file__).resolve().parents[1]
CONFUSION = [{"actual": a, "predicted": p, "round": "r2"}
             for a, p, n in [("PER", "PER", 5), ("ORG", "LOC", 2), ("O", "ORG", 1), ("LOC", "O", 3), ("LOC", "LOC", 4)]
             for _ in range(n)]


def test_figures_draw_each_report_plot_with_the_same_bytes_twice(tmp_path):
    rows = write_round_report(metrics_dir(tmp_path), tmp_path / "rounds.json")
    specs = figure_specs(rows, CONFUSION)
    assert {d["round"] for d in specs["flips"]["data"]["values"]} == {"r1", "r2"}  # r0: absent, not null
    cells = {(d["actual"], d["predicted"]): d["spans"] for d in specs["confusion"]["data"]["values"]}
    assert cells[("PER", "PER")] == 5 and cells[("LOC", "O")] == 3 and ("O", "O") not in cells
    written = write_figures(rows, CONFUSION, tmp_path / "figures")
    assert sorted(p.name for p in written) == sorted(f"{s}.{e}" for s in ("test_f1", "pseudo_labels", "flips", "confusion")
                                                     for e in ("png", "svg"))
    first = {p.name: p.read_bytes() for p in written}
    for name, data in first.items():
        if name.endswith(".png"):
            assert data.startswith(b"\x89PNG") and len(data) > 5000
    marks = {"test_f1.svg": "mark-line", "pseudo_labels.svg": "mark-line", "flips.svg": "mark-rect", "confusion.svg": "mark-rect"}
    for name, mark in marks.items():
        assert re.search(rf'<g class="{mark} role-mark[^>]*><path[^>]* d="M', first[name].decode()), name
    assert ">5</text>" in first["confusion.svg"].decode()  # the PER/PER count is printed
    write_figures(rows, CONFUSION, tmp_path / "figures")
    assert {p.name: p.read_bytes() for p in written} == first


def test_a_figure_without_data_says_why(tmp_path):
    """Only r0 and no gold tags: no flips, no pseudo-label scores, no confusion rows."""
    rows = [{"round": "r0", "round_index": 0, "test_f1": 0.5, "test_span_f1": 0.4, "pseudo_label_f1": None,
             "flips_type_swap": None}]
    written = write_figures(rows, [], tmp_path / "figures")
    assert len(written) == 8 and all(p.stat().st_size > 0 for p in written)
    assert "no flips" in (tmp_path / "figures/flips.svg").read_text()
    assert "no gold tags" in (tmp_path / "figures/pseudo_labels.svg").read_text()


@pytest.fixture(scope="module")
def page_template() -> str:
    return plots_page_template()


def test_page_template_carries_its_javascript(page_template, tmp_path):
    from dvc_render.html import render_html
    from dvc_render.vega import VegaRenderer

    assert "{plot_divs}" in page_template and "{scripts}" not in page_template
    assert not re.search(r"<script[^>]+src=", page_template)
    assert "window.vegaEmbed=" in page_template and len(page_template) > 500_000
    assert "BSD 3-Clause" in page_template
    # DVC fills it; its CDN <script> tags have no placeholder to go to
    renderer = VegaRenderer([{"x": 1, "y": 2}], "p", template="linear", x="x", y="y")
    (tmp_path / "template.html").write_text(page_template, encoding="utf8")
    html = Path(render_html([renderer], tmp_path / "index.html", tmp_path / "template.html")).read_text(encoding="utf8")
    assert "cdn.jsdelivr" not in html and "vegaEmbed('#p'" in html


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_dom(page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran, from headless Chromium with networking disabled:
    every proxied request goes to a closed port and every host name fails to resolve."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--virtual-time-budget=15000", "--dump-dom", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def drawn_marks(dom: str, plot_ids: list[str]) -> dict[str, int]:
    """Per plot div, how many drawn mark paths (lines, rects, symbols) its SVG holds."""
    starts = sorted((dom.index(f'<div id="{i}"'), i) for i in plot_ids)
    counts = {}
    for (start, plot), (end, _) in zip(starts, starts[1:] + [(len(dom), None)]):
        groups = re.findall(r'<g class="mark-(?:line|rect|symbol|area)[^"]*role-mark[^>]*>(.*?)</g>', dom[start:end])
        counts[plot] = sum(len(re.findall(r'<path[^>]* d="M', g)) for g in groups)
    return counts


def plots_folder(root: Path, rounds: int, page_template: str) -> Path:
    """The project's dvc.yaml, params.yaml and .dvc/config and plot templates in a fresh git+DVC
    folder ``root``, with synthetic report files and training logs shaped like a real run's of
    r0 and ``rounds`` rounds (no pipeline run)."""
    for name in ("dvc.yaml", ".dvc/config"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, root / name)
    write_params(root / "params.yaml")  # the schema defaults, not the working tree's params.yaml
    shutil.copytree(ROOT / ".dvc/plots", root / ".dvc/plots")
    rewrite_rounds(root / "params.yaml", rounds)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    names = [f"r{i}" for i in range(rounds + 1)]
    rows = write_round_report(metrics_dir(root, names), root / "reports/rounds.json")
    write_json(root / "reports/flips.json", flip_rows(rows))
    write_json(root / "reports/confusion.json", CONFUSION)
    (root / "reports/plots_template.html").write_text(page_template, encoding="utf-8")
    for r in names:
        write_logs(root / "logs" / r, history(target=r != "r0"))
    return root


@pytest.fixture(scope="module")
def plots_project(tmp_path_factory, page_template) -> Path:
    """`plots_folder` with two rounds (the default is one; the page is checked with two)."""
    return plots_folder(tmp_path_factory.mktemp("plots"), 2, page_template)


ROUND_PLOTS = ("Test F1 by round", "Pseudo-label P/R/F1 by round", "Label flips by round", "Soft pseudo-label quality by round")


@pytest.mark.parametrize("rounds", [1, 2])
def test_round_plots_name_the_rounds_on_an_ordinal_axis(tmp_path, page_template, rounds):
    """Issue 41: `dvc plots show` draws the round names as the x axis's only ticks, in round
    order (DVC's linear template drew round_index with ticks 0.0, 0.1, ... 1.0), and the flips
    as bars, which read with the default single round (one x value) as well."""
    import vl_convert as vlc

    from glode.plots import VEGA_LITE_VERSION

    root = plots_folder(tmp_path / "p", rounds, page_template)
    proc = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--json"], cwd=root,
                          env=dict(os.environ, DVC_NO_ANALYTICS="1"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)["data"]
    names = [f"r{i}" for i in range(rounds + 1)]
    for title in ROUND_PLOTS:
        (plot,) = shown[title]
        svg = vlc.vegalite_to_svg(plot["content"], vl_version=VEGA_LITE_VERSION)
        on_x = names[1:] if title == "Label flips by round" else names  # r0 has no flips
        assert f"X-axis titled 'round' for a discrete scale with {len(on_x)} value{'s' * (len(on_x) > 1)}: {', '.join(on_x)}\"" in svg, title
        mark = "rect" if title == "Label flips by round" else "line"
        assert re.search(rf'<g class="mark-{mark} role-mark[^>]*><path[^>]* d="M', svg), title
    flips = vlc.vegalite_to_svg(shown["Label flips by round"][0]["content"], vl_version=VEGA_LITE_VERSION)
    assert len(re.findall(r'<path aria-label="round: r1;', flips)) == 3  # a bar per kind of flip


def dvc_plots_page(root: Path, *args: str) -> tuple[Path, list[str]]:
    """`dvc plots show` (the plain command, unless args say otherwise): the page and its plots' ids."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    out = root / f"page{len(args)}"
    proc = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "-o", str(out), *args], cwd=root, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "WARNING" not in proc.stderr + proc.stdout, proc.stderr + proc.stdout
    html = (out / "index.html").read_text(encoding="utf-8")
    return out / "index.html", re.findall(r'<div id = "([^"]+)">', html)


@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (Debian package chromium)")
def test_plots_page_draws_every_plot_offline_in_a_browser(plots_project, tmp_path):
    page, ids = dvc_plots_page(plots_project)
    round_plots = ["Test_F1_by_round", "Pseudo-label_P_R_F1_by_round", "Label_flips_by_round",
                   "Soft_pseudo-label_quality_by_round", "Pseudo_labels_against_gold__last_round"]
    assert ids[:5] == round_plots
    curves = [i for i in ids if i.startswith("logs_")]
    assert len(curves) == 5 + 6 + 6 and "logs_r0_plots_metrics_loss_target_tsv" not in curves
    assert not any(i.endswith("_steps_tsv") for i in curves)
    html = page.read_text(encoding="utf-8")
    assert '"title": "epoch"' in html and "cdn.jsdelivr" not in html
    counts = drawn_marks(chromium_dom(page, tmp_path / "profile"), ids)
    assert all(n > 0 for n in counts.values()), {k: n for k, n in counts.items() if not n}
    assert counts["Pseudo_labels_against_gold__last_round"] >= 5  # one rect per (gold, pseudo label) cell


@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (Debian package chromium)")
def test_the_check_sees_a_blank_page_with_dvcs_own_cdn_template(plots_project, tmp_path):
    """The control: DVC's built-in page loads its JavaScript from a CDN, so offline it draws nothing."""
    from dvc_render.html import PAGE_HTML

    (tmp_path / "cdn.html").write_text(PAGE_HTML, encoding="utf-8")
    page, ids = dvc_plots_page(plots_project, "--html-template", str(tmp_path / "cdn.html"))
    assert "cdn.jsdelivr" in page.read_text(encoding="utf-8")
    assert set(drawn_marks(chromium_dom(page, tmp_path / "profile"), ids).values()) == {0}
