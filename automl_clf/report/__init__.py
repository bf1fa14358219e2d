"""The report room: metrics.json, report.md and figures of an export."""

from automl_clf.report.markdown import render_markdown
from automl_clf.report.metrics import metrics_dict
from automl_clf.report.plots import plot_confusion_matrix

__all__ = ["metrics_dict", "plot_confusion_matrix", "render_markdown"]
