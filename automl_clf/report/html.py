"""`index.html`: the whole report as one self-contained page a person can open offline.

Every image is embedded as a data URI, the style sheet is inline, and there is no script, so the
file can be mailed, attached to a ticket or opened from a USB stick and shows the same. Sections
have stable ids (data, search, model, test, confusion, per-class, calibration, mistakes, and
label-issues when `run` audited the labels).
"""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from automl_clf.report import audit as audits
from automl_clf.report import duplicates, tables
from automl_clf.report.content import ReportContent
from automl_clf.report.plots import overlay_heatmap
from automl_clf.report.tables import Table

if TYPE_CHECKING:
    from automl_clf.final.audit import AuditResult

GALLERY_PX = 96  # side of a gallery thumbnail, pixels (nearest-neighbour upscaling)
HEATMAP_COLOURS = 64  # a heatmap thumbnail's palette: a few KB each
# Figures are drawn at report/plots.py's DPI (110): shown at this share of their pixels, 10 pt
# text is 10 CSS pixels high, and two ordinary figures share a row.
DISPLAY_SCALE = 0.65
FULL_SIZE_PX = 900  # CSS pixels: a figure shown wider than this names its file

STYLE = """
:root { --ink: #111827; --muted: #6b7280; --line: #e5e7eb; --accent: #2563eb; --bg: #f9fafb; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: var(--bg); }
header { background: #0f172a; color: white; padding: 28px 40px 24px; }
header h1 { margin: 0 0 6px; font-size: 26px; }
header p { margin: 0; color: #cbd5e1; max-width: 980px; }
nav { background: white; border-bottom: 1px solid var(--line); padding: 8px 40px;
      position: sticky; top: 0; }
nav a { color: var(--accent); margin-right: 18px; text-decoration: none; font-size: 14px; }
main { max-width: 1120px; margin: 0 auto; padding: 8px 40px 48px; }
section { background: white; border: 1px solid var(--line); border-radius: 10px;
          padding: 18px 24px; margin-top: 22px; }
h2 { margin: 0 0 12px; font-size: 20px; }
h3 { margin: 18px 0 8px; font-size: 16px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px;
         margin-top: 18px; }
.card { background: white; border: 1px solid var(--line); border-radius: 10px;
        padding: 12px 16px; }
.card .value { font-size: 26px; font-weight: 650; }
.card .label { color: var(--muted); font-size: 13px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 14px; }
th, td { padding: 4px 12px 4px 0; text-align: left; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num { font-variant-numeric: tabular-nums; }
.figures { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.figures figure { margin: 0; max-width: 100%; }
.figures img { width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
.figures figcaption { color: var(--muted); font-size: 13px; margin-top: 2px; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
.gallery figure { margin: 0; width: 120px; text-align: center; font-size: 12px; }
.gallery img { width: 96px; height: 96px; image-rendering: pixelated;
               border: 2px solid #dc2626; border-radius: 4px; }
.gallery figcaption { overflow-wrap: anywhere; }
.gallery.right img { border-color: #16a34a; }
.gallery .path { color: var(--muted); word-break: break-all; }
.scroll { overflow-x: auto; max-width: 100%; }
.muted { color: var(--muted); }
.bad { color: #dc2626; font-weight: 600; }
.bar { display: inline-block; height: 10px; background: var(--accent); border-radius: 2px;
       vertical-align: middle; margin-right: 6px; }
details summary { cursor: pointer; color: var(--accent); margin: 6px 0; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; }
pre { background: var(--bg); padding: 10px; border-radius: 6px; overflow-x: auto; }
footer { color: var(--muted); font-size: 13px; text-align: center; margin-top: 28px; }
"""

CAPTIONS = {  # figure key (report/write.py FIGURES) -> caption
    "history": "Optimisation history: each trial's objective, the best so far as a line",
    "importances": "Parameter importances (fANOVA)",
    "curves": "Loss and accuracy per epoch",
    "augmented": "Training images (above) and what the augmentation made of them (below)",
    "confusion": "Counts (rows = true class)",
    "confusion_normalized": "Normalised by true class (the diagonal is each class's recall)",
    "reliability_before": "Before temperature scaling: accuracy against confidence",
    "reliability": "Reliability diagram: accuracy against confidence, as exported",
    "coverage": "Accuracy of the surest share of the test images (the rest unsure)",
    "mistakes": "Most confident mistakes",
    "mistakes_heatmaps": "Where the model looked in its most confident mistakes",
    "examples_heatmaps": "Where the model looked in one correct image per class",
    "near_duplicates": "Clusters of near-duplicate images, each file with its split",
}

LABEL_ISSUES = "label-issues"  # the label audit's section id (report/audit.py)
SECTIONS = (
    ("test", "Test metrics"),
    ("confusion", "Confusion"),
    ("per-class", "Per class"),
    ("calibration", "Calibration"),
    ("unsure", "Unsure"),
    ("mistakes", "Mistakes"),
    ("model", "Final model"),
    ("training", "Training"),
    ("search", "Search"),
    ("data", "Data"),
    ("near-duplicates", "Near-duplicates"),
)


def render_html(content: ReportContent, figures: dict[str, Path]) -> str:
    """The page; `figures` maps figure keys to the PNG files to embed."""
    metrics = content.metrics
    cards = [
        ("test accuracy", f"{metrics['accuracy']:.4f}"),
        ("balanced accuracy", f"{metrics['balanced_accuracy']:.4f}"),
        ("macro F1", f"{metrics['macro_f1']:.4f}"),
        ("log loss", f"{metrics['log_loss']:.4f}"),
        ("calibration error", f"{metrics['expected_calibration_error']:.4f}"),
        ("test images", str(metrics["n_images"])),
    ]
    body = [
        f"<header><h1>autoclf report: {escape(content.title)}</h1>"
        f"<p>{escape(tables.headline(content))}</p></header>",
        "<nav>"
        + "".join(f'<a href="#{key}">{label}</a>' for key, label in _nav(content))
        + "</nav>",
        "<main>",
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="value">{v}</div><div class="label">{k}</div></div>'
            for k, v in cards
        )
        + "</div>",
        _test_section(content),
        _section(
            "confusion",
            "Confusion matrices",
            _figures(figures, "confusion", "confusion_normalized")
            + _confused_pairs(content)
            + "<details><summary>the counts as a table</summary>"
            + html_table(tables.confusion_table(content))
            + "</details>",
        ),
        _per_class_section(content),
        _calibration_section(content, figures),
        _section(
            "unsure",
            "Unsure answers and out-of-distribution images",
            "".join(f"<p>{escape(s)}</p>" for s in tables.selective_sentences(content))
            + html_table(tables.coverage_table(content))
            + _figures(figures, "coverage"),
        ),
        _mistakes_section(content),
        _model_section(content),
        _training_section(content, figures),
        _search_section(content, figures),
        _data_section(content),
        label_issues_html(content.label_issues) if content.label_issues is not None else "",
        _near_duplicates_section(content, figures),
        "</main>",
        f"<footer>Written by autoclf. Study {escape(content.title)}, {_trials(content)}.</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>autoclf report: {escape(content.title)}</title><style>{STYLE}</style></head>"
        "<body>" + "\n".join(body) + "</body></html>\n"
    )


def _nav(content: ReportContent) -> tuple[tuple[str, str], ...]:
    """The sections linked at the top: the label audit's too when it ran (`run`)."""
    audited = content.label_issues is not None
    return (*SECTIONS, (LABEL_ISSUES, "Label issues")) if audited else SECTIONS


def _trials(content: ReportContent) -> str:
    members = content.final.members
    if members:
        return "ensemble of trials " + ", ".join(f"#{m.trial}" for m in members)
    return f"trial #{content.final.trial}"


def html_table(table: Table, numeric_from: int = 1) -> str:
    """A table; columns from `numeric_from` on are set in tabular figures."""
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    rows = []
    for row in table.rows:
        cells = "".join(
            f'<td class="num">{escape(c)}</td>' if i >= numeric_from else f"<td>{escape(c)}</td>"
            for i, c in enumerate(row)
        )
        rows.append(f"<tr>{cells}</tr>")
    markup = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return f'<div class="scroll">{markup}</div>'


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _section(key: str, title: str, inner: str) -> str:
    return f'<section id="{key}"><h2>{escape(title)}</h2>{inner}</section>'


def _figures(figures: dict[str, Path], *keys: str) -> str:
    """The figures present, each at DISPLAY_SCALE of its size (never wider than the page), as
    many to a row as fit: the figures size themselves to what they show (report/plots.py)."""
    items = []
    for key in keys:
        if key not in figures:
            continue
        png = figures[key].read_bytes()
        with Image.open(io.BytesIO(png)) as image:
            width = image.width
        shown = round(width * DISPLAY_SCALE)
        caption = escape(CAPTIONS[key])
        if shown > FULL_SIZE_PX:  # too much detail for the page: say where the PNG is
            caption += f" (full size: <code>{escape(figures[key].name)}</code> beside this page)"
        items.append(
            f'<figure style="width:{shown}px"><img src="{data_uri(png)}" '
            f'alt="{escape(CAPTIONS[key])}"><figcaption>{caption}</figcaption></figure>'
        )
    return f'<div class="figures">{"".join(items)}</div>' if items else ""


def _test_section(content: ReportContent) -> str:
    inner = html_table(tables.test_metrics_table(content))
    if "tta" not in content.metrics:
        inner += (
            '<p class="muted">No test-time augmentation (set final.tta: [hflip, crops] to '
            "report it).</p>"
        )
    return _section("test", "Test metrics (held-out split, evaluated once)", inner)


def _calibration_section(content: ReportContent, figures: dict[str, Path]) -> str:
    inner = "".join(f"<p>{escape(s)}</p>" for s in tables.calibration_sentences(content))
    table = tables.calibration_table(content)
    if table is not None:
        inner += html_table(table)
    inner += _figures(figures, "reliability_before", "reliability")
    return _section("calibration", "Calibration", inner)


def _confused_pairs(content: ReportContent) -> str:
    table = tables.confused_pairs_table(content)
    if table is None:
        return ""
    return "<h3>Most frequent confusions</h3>" + html_table(table, numeric_from=2)


def _per_class_section(content: ReportContent) -> str:
    """Precision/recall/F1 per class, with a bar for F1 so weak classes stand out."""
    rows = []
    for name, r in content.metrics["per_class"].items():
        bar = f'<span class="bar" style="width:{80 * r["f1"]:.0f}px"></span>'
        rows.append(
            f"<tr><td>{escape(name)}</td><td class='num'>{r['precision']:.3f}</td>"
            f"<td class='num'>{r['recall']:.3f}</td><td class='num'>{bar}{r['f1']:.3f}</td>"
            f"<td class='num'>{r['support']}</td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("class", "precision", "recall", "F1", "support"))
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return _section("per-class", "Per-class precision, recall and F1", table)


def _mistakes_section(content: ReportContent) -> str:
    indices = content.mistakes()
    if not indices:
        return _section(
            "mistakes",
            "Most confident mistakes",
            "<p>No test image is misclassified.</p>" + _heatmaps(content, []),
        )
    items = []
    for i in indices:
        caption = escape(content.mistake_caption(i)).replace("\n", "<br>")
        path = content.test_paths[i]
        items.append(
            f'<figure><img src="{data_uri(_thumbnail(content.image(i)))}" alt="test image">'
            f'<figcaption>{caption}<br><span class="path">{escape(path.parent.name)}/'
            f"{escape(path.name)}</span></figcaption></figure>"
        )
    n_wrong = int((content.test.predictions != content.test.labels).sum())
    shown = "it" if len(indices) == 1 else f"the {len(indices)} the model was surest about"
    intro = (
        f"<p>Misclassified: {n_wrong} of {len(content.test.labels)} test images. Below, "
        f"{shown}: true class → predicted class (its probability).</p>"
    )
    return _section(
        "mistakes",
        "Most confident mistakes",
        intro
        + f'<div class="gallery">{"".join(items)}</div>'
        + "<details><summary>as a table, with full paths</summary>"
        + html_table(tables.mistakes_table(content), numeric_from=3)
        + "</details>"
        + _heatmaps(content, indices),
    )


def _heatmaps(content: ReportContent, mistakes: list[int]) -> str:
    """The mistakes, then one correct image per class, under heatmaps of where the model
    looked; or why there are none."""
    heatmaps = content.heatmaps
    if heatmaps is None:
        return ""
    notes = "".join(f'<p class="muted">Note: {escape(note)}.</p>' for note in heatmaps.notes)
    if not heatmaps.maps:
        return "<h3>Where the model looked</h3>" + notes
    inner = (
        "<h3>Where the model looked</h3>"
        f"<p>Grad-CAM of the predicted class at <code>{escape(heatmaps.layer)}</code>: red where "
        "the evidence for it lay, blue where there was none.</p>"
    )
    for indices, caption, heading, css in (
        (mistakes, content.mistake_caption, "The mistakes above", "gallery"),
        (
            content.examples(),
            content.example_caption,
            "One correct image per class",
            "gallery right",
        ),
    ):
        items = [
            f'<figure><img src="{data_uri(_thumbnail(_overlay(content, i), HEATMAP_COLOURS))}" '
            'alt="heatmap">'
            f"<figcaption>{escape(caption(i)).replace(chr(10), '<br>')}</figcaption></figure>"
            for i in indices
            if i in heatmaps.maps
        ]
        if items:
            inner += f'<p>{heading}:</p><div class="{css}">{"".join(items)}</div>'
    return inner + notes


def _overlay(content: ReportContent, index: int) -> np.ndarray:
    assert content.heatmaps is not None
    return overlay_heatmap(content.image(index), content.heatmaps.maps[index])


def _model_section(content: ReportContent) -> str:
    import json

    final = content.final
    inner = html_table(tables.model_table(content))
    inner += "".join(f'<p class="muted">Note: {escape(note)}.</p>' for note in final.notes)
    members = tables.members_table(content)
    if members is not None:
        inner += "<h3>Ensemble members (best first)</h3>" + html_table(members, numeric_from=9)
        inner += (
            f"<h3>Configuration of member 0 (trial #{final.trial}, what the search chose)</h3>"
        )
    else:
        inner += "<h3>Configuration (what the search chose)</h3>"
    inner += html_table(tables.params_table(content))
    seeds = tables.seeds_table(content)
    if seeds is not None:
        inner += "<h3>Retrain seeds (best on validation exported)</h3>" + html_table(seeds)
    inner += "<h3>Export formats</h3>" + html_table(tables.formats_table(content), numeric_from=9)
    inner += (
        "<details><summary>the whole resolved configuration</summary><pre>"
        + escape(json.dumps(content.final.config, indent=2))
        + "</pre></details>"
    )
    return _section("model", "Final model", inner)


def _training_section(content: ReportContent, figures: dict[str, Path]) -> str:
    """How the exported model trained: its learning curves and its augmented images."""
    inner = "".join(f"<p>{escape(s)}</p>" for s in tables.curve_sentences(content))
    inner += _figures(figures, "curves")
    preview = content.augmented
    if preview is None:
        inner += f"<p>{escape(tables.NO_AUGMENTATION)}</p>"
    else:
        inner += f"<h3>Augmentation</h3><p>{escape(preview.description)}</p>"
        inner += _figures(figures, "augmented")
    return _section("training", "Training: learning curves and augmentation", inner)


def _search_section(content: ReportContent, figures: dict[str, Path]) -> str:
    search = content.search
    if search is None:
        return _section("search", "Search", "<p>No study was given.</p>")
    inner = "".join(f"<p>{escape(s)}</p>" for s in tables.search_sentences(search))
    inner += _figures(figures, "history", "importances")
    inner += "".join(
        f'<p class="muted">{escape(s)}</p>' for s in tables.importance_sentences(search)
    )
    comparison = tables.comparison_table(search)
    if comparison is not None:
        inner += "<h3>Best vs runner-up</h3>" + html_table(comparison)
    inner += (
        f"<details><summary>all {len(search.trials)} trials</summary>"
        + html_table(tables.trials_table(search), numeric_from=2)
        + "</details>"
    )
    return _section("search", f"Search: study {search.study_name}", inner)


def _data_section(content: ReportContent) -> str:
    data = content.data
    layout = "pre-split train/val/test folders" if data.presplit else "split by autoclf"
    inner = (
        f"<p><code>{escape(data.root)}</code>: {len(content.classes)} classes, "
        f"{data.n_files} files ({layout}).</p>" + html_table(tables.data_table(content))
    )
    inner += (
        f'<p class="muted">Data fingerprint (split, class, file name and contents of every '
        f"file) sha256 <code>{data.fingerprint}</code>.</p>"
    )
    if data.skipped:
        inner += (
            f'<details><summary class="bad">{len(data.skipped)} file(s) skipped</summary>'
            + html_table(tables.skipped_table(content), numeric_from=9)
            + "</details>"
        )
    else:
        inner += "<p>No file was skipped.</p>"
    return _section("data", "Data", inner)


def _near_duplicates_section(content: ReportContent, figures: dict[str, Path]) -> str:
    inner = "".join(f"<p>{escape(s)}</p>" for s in duplicates.sentences(content))
    table = duplicates.clusters_table(content)
    if table.rows:
        inner += _figures(figures, "near_duplicates") + html_table(table, numeric_from=3)
    return _section("near-duplicates", "Near-duplicates", inner)


def _thumbnail(pixels: np.ndarray, colours: int | None = None) -> bytes:
    """A GALLERY_PX PNG of `pixels`; with `colours`, in a palette of that many (a heatmap
    overlay of a photo: ~5 KB instead of ~20 KB, and it looks the same at this size)."""
    image = Image.fromarray(pixels)
    image = image.resize((GALLERY_PX, GALLERY_PX), Image.Resampling.NEAREST)
    if colours is not None:
        image = image.quantize(colours)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def label_issues_html(audit: AuditResult) -> str:
    """The label audit's section: what ran, a gallery of the most likely mislabelled images,
    and the table (report/audit.py)."""
    inner = "".join(f"<p>{escape(s)}</p>" for s in audits.audit_sentences(audit))
    items = []
    for k, issue in enumerate(audit.issues[: len(audit.thumbnails)]):
        caption = escape(audits.issue_caption(audit, k)).replace("\n", "<br>")
        items.append(
            f'<figure><img src="{data_uri(_thumbnail(audits.issue_image(audit, k)))}" '
            f'alt="image {issue.rank}"><figcaption>{caption}<br><span class="path">'
            f"{escape(issue.path.parent.name)}/{escape(issue.path.name)}</span></figcaption>"
            "</figure>"
        )
    if items:
        inner += f'<div class="gallery">{"".join(items)}</div>'
        inner += (
            "<details open><summary>as a table, with full paths</summary>"
            + html_table(audits.issues_table(audit), numeric_from=5)
            + "</details>"
        )
    return _section(LABEL_ISSUES, "Label issues: images that look mislabelled", inner)


def render_audit_html(audit: AuditResult, title: str) -> str:
    """`autoclf audit`'s page: the label issues section alone, self-contained."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>autoclf label audit: {escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><header><h1>autoclf label audit: {escape(title)}</h1>"
        f"<p>{escape(str(audit.root))}: {len(audit.issues)} image(s) look mislabelled</p>"
        f"</header><main>{label_issues_html(audit)}</main>"
        "<footer>Written by autoclf. Nothing in the data folder was changed.</footer>"
        "</body></html>\n"
    )
