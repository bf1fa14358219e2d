"""The final room: retrain the chosen trial, evaluate on test, export, and the Predictor."""

from automl_clf.final.export import write_export
from automl_clf.final.predictor import Predictor, load
from automl_clf.final.retrain import FinalResult, retrain

__all__ = ["FinalResult", "Predictor", "load", "retrain", "write_export"]
