"""The report room: metrics.json, report.md, index.html and figures of an export, the search
summary read back from a study, and the per-trial notes and figures optuna-dashboard shows."""

from automl_clf.report.content import (
    AugmentedPreview,
    DataSummary,
    FinalSummary,
    LearningCurve,
    MemberSummary,
    ReportContent,
    SeedSummary,
)
from automl_clf.report.metrics import metrics_dict
from automl_clf.report.search import SearchSummary, summarise_search
from automl_clf.report.write import write_report

__all__ = [
    "AugmentedPreview",
    "DataSummary",
    "FinalSummary",
    "LearningCurve",
    "MemberSummary",
    "ReportContent",
    "SearchSummary",
    "SeedSummary",
    "metrics_dict",
    "summarise_search",
    "write_report",
]
