"""The search room: the Optuna study (create/resume), sampler and pruner, and the objective."""

from automl_clf.search.run import SearchResult, run_search
from automl_clf.search.study import best_trial, load_existing_study

__all__ = ["SearchResult", "best_trial", "load_existing_study", "run_search"]
