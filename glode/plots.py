"""Pictures of the round report that need no network.

``dvc plots show`` fills an HTML page template with one vega-lite spec per plot; DVC's own page
loads vega, vega-lite and vega-embed from a CDN, so offline it stays blank. `plots_page_template`
is a template that carries that JavaScript inline, taken from the installed ``vl-convert-python``
(its ``javascript_bundle``); `.dvc/config` points ``plots.html_template`` at the copy the
``report`` stage writes. `write_figures` draws the report as static PNG and SVG files with the
same package, for a README or a machine without a browser.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from glode.atomic import atomic_dir, atomic_path

# DVC 3's plot templates are vega-lite v5 specs (`$schema` .../vega-lite/v5.json); the newest v5
# that vl-convert bundles draws them (checked in a browser by tests/test_plots.py).
VEGA_LITE_VERSION = "5.21"

# BSD-3-Clause needs the copyright notice and licence with every copy, the minified bundle has none.
_NOTICE = """\
Inline JavaScript below: Vega {vega}, Vega-Lite {vegalite}, Vega-Embed {embed} and their
dependencies (d3 modules, vega-tooltip, vega-themes, ...), as bundled by vl-convert-python
{vlc} (vl_convert.javascript_bundle). Vega, Vega-Lite and Vega-Embed:
Copyright (c) 2015-2023, University of Washington Interactive Data Lab. All rights reserved.
Licensed under the BSD 3-Clause licence: redistribution and use in source and binary forms,
with or without modification, are permitted provided that (1) redistributions of source code
retain the above copyright notice, this list of conditions and the following disclaimer;
(2) redistributions in binary form reproduce the above copyright notice, this list of
conditions and the following disclaimer in the documentation and/or other materials provided
with the distribution; (3) neither the name of the copyright holder nor the names of its
contributors may be used to endorse or promote products derived from this software without
specific prior written permission. THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND
CONTRIBUTORS "AS IS" AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE DISCLAIMED. IN
NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT,
INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO,
PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS
INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT
LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF
THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE. The d3 modules are
Copyright Mike Bostock under the ISC licence; the other bundled modules are MIT or ISC licensed."""

# DVC replaces {plot_divs} with one `<div>` per plot, each calling the global `vegaEmbed`. The
# wrapper draws SVG (crisp, and its marks can be checked in the DOM) and hides the "open in the
# Vega editor" action, which needs the internet. No {scripts} placeholder: that is where DVC
# would put its CDN <script> tags.
_PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
{refresh_tag}
<title>glode plots</title>
<!--
@NOTICE@
-->
<script>@BUNDLE@</script>
<script>
const glodeEmbed = window.vegaEmbed;
window.vegaEmbed = (el, spec, opts) => glodeEmbed(el, spec, Object.assign(
  {renderer: "svg", actions: {export: true, source: true, compiled: false, editor: false}}, opts));
</script>
<style>
body { font-family: sans-serif; display: flex; flex-wrap: wrap; align-items: flex-start; gap: 12px; }
table { border-spacing: 15px; }
</style>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def plots_page_template() -> str:
    """An HTML template for ``dvc plots show`` with vega, vega-lite and vega-embed inline."""
    import vl_convert as vlc

    bundle = vlc.javascript_bundle(vl_version=VEGA_LITE_VERSION)
    # a literal "</script" inside the code would end the <script> element early
    bundle = bundle.replace("</script", "<\\/script")
    notice = _NOTICE.format(vega=vlc.get_vega_version(), vegalite=VEGA_LITE_VERSION,
                            embed=vlc.get_vega_embed_version(), vlc=_vl_convert_version())
    return _PAGE.replace("@NOTICE@", notice).replace("@BUNDLE@", bundle)


def _vl_convert_version() -> str:
    from importlib.metadata import version

    return version("vl-convert-python")


def write_plots_template(path: Path) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(plots_page_template(), encoding="utf-8")
    return path


# --- static figures -------------------------------------------------------------------------

_WIDTH, _HEIGHT = 320, 220


def _round_axis(rows: Sequence[dict]) -> dict:
    return {"field": "round", "type": "ordinal", "sort": [r["round"] for r in rows], "title": "round",
            "axis": {"labelAngle": 0}}


def _long(rows: Sequence[dict], fields: dict[str, str]) -> list[dict]:
    """One ``{round, series, value}`` point per row and field that the row has (r0 has no flips)."""
    return [{"round": r["round"], "series": name, "value": r[f]}
            for r in rows for f, name in fields.items() if r.get(f) is not None]


def _series(fields: dict[str, str]) -> dict:
    """Colour by series, in the order given (not alphabetical)."""
    return {"field": "series", "type": "nominal", "sort": list(fields.values()), "title": None,
            "legend": {"orient": "bottom"}}


def _lines(title: str, rows: Sequence[dict], fields: dict[str, str], y_title: str) -> dict:
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": title, "width": _WIDTH, "height": _HEIGHT,
        "data": {"values": _long(rows, fields)},
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": _round_axis(rows),
            "y": {"field": "value", "type": "quantitative", "title": y_title, "scale": {"zero": False}},
            "color": _series(fields),
        },
    }


def _or_note(spec: dict, note: str) -> dict:
    """`spec`, or, when it has no data (vega then gives the picture no size), its title over a
    line saying why: a figure file is always written."""
    if spec["data"]["values"]:
        return spec
    return {"$schema": spec["$schema"], "title": spec["title"], "width": _WIDTH, "height": 40,
            "data": {"values": [{"note": note}]}, "mark": {"type": "text", "fontSize": 13},
            "encoding": {"text": {"field": "note"}}}


def figure_specs(rows: Sequence[dict], confusion: Sequence[dict]) -> dict[str, dict]:
    """Vega-lite specs of the report, by file stem: test F1, pseudo-label quality and label
    flips by round (the rows of ``reports/rounds.json``) and the confusion matrix of the last
    round's pseudo labels (the rows of ``reports/confusion.json``)."""
    flips = {"flips_o_to_entity": "O → entity", "flips_entity_to_o": "entity → O", "flips_type_swap": "type swap"}
    counts = Counter((d["actual"], d["predicted"]) for d in confusion)
    cells = [{"actual": a, "predicted": p, "spans": n} for (a, p), n in sorted(counts.items())]
    last = confusion[0]["round"] if confusion and "round" in confusion[0] else None
    return {
        "test_f1": _or_note(_lines("Target test F1 by round", rows,
                                   {"test_f1": "seqeval strict F1", "test_span_f1": "span F1"}, "F1"),
                            "no scores: no model evaluated yet"),
        "pseudo_labels": _or_note(_lines("Pseudo labels against gold by round", rows,
                                         {"pseudo_label_precision": "precision", "pseudo_label_recall": "recall",
                                          "pseudo_label_f1": "F1"}, "score"),
                                  "no scores: the target corpus has no gold tags"),
        "flips": _or_note({
            "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
            "title": "Label flips by round and kind", "width": _WIDTH, "height": _HEIGHT,
            "data": {"values": _long(rows, flips)},
            "mark": "bar",
            "encoding": {
                "x": _round_axis(rows),
                "xOffset": {"field": "series", "type": "nominal", "sort": list(flips.values())},
                "y": {"field": "value", "type": "quantitative", "title": "spans whose label flipped"},
                "color": _series(flips),
            },
        }, "no flips: no self-training round yet"),
        "confusion": _or_note({
            "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
            "title": f"Pseudo labels against gold{f', {last}' if last else ''} (spans where either is an entity)",
            "width": _HEIGHT, "height": _HEIGHT,
            "data": {"values": cells},
            "encoding": {
                "x": {"field": "predicted", "type": "nominal", "title": "pseudo label", "axis": {"labelAngle": 0}},
                "y": {"field": "actual", "type": "nominal", "title": "gold"},
            },
            # no colour legend: the counts are printed in the cells, and a gradient legend's SVG
            # id changes from one render to the next (the bytes would not be reproducible)
            "layer": [
                {"mark": "rect", "encoding": {"color": {"field": "spans", "type": "quantitative",
                                                        "scale": {"scheme": "blues"}, "legend": None}}},
                {"mark": {"type": "text", "fontSize": 12},
                 "encoding": {"text": {"field": "spans", "type": "quantitative"},
                              "color": {"condition": {"test": "datum.spans > 0.5 * " + str(max(counts.values(), default=0)),
                                                      "value": "white"}, "value": "black"}}},
            ],
        }, "no spans: no round's labels, or no gold tags in the target corpus"),
    }


def write_figures(rows: Sequence[dict], confusion: Sequence[dict], out_dir: Path) -> list[Path]:
    """Each of `figure_specs` as ``<stem>.svg`` and ``<stem>.png`` in ``out_dir`` (written whole,
    then renamed into place). Same rows on the same machine give the same bytes; text is laid
    out with the machine's fonts, so another machine may differ in the last pixels."""
    import vl_convert as vlc

    specs = figure_specs(rows, confusion)
    with atomic_dir(out_dir) as tmp:
        for stem, spec in specs.items():
            (Path(tmp) / f"{stem}.svg").write_text(vlc.vegalite_to_svg(spec, vl_version=VEGA_LITE_VERSION), encoding="utf-8")
            (Path(tmp) / f"{stem}.png").write_bytes(vlc.vegalite_to_png(spec, vl_version=VEGA_LITE_VERSION, scale=2))
    return sorted(out_dir / f"{stem}.{ext}" for stem in specs for ext in ("svg", "png"))
