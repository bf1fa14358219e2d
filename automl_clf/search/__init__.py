"""The search room: the Optuna study (create/resume, `study.py`), samplers and pruners
(`samplers.py`), storages and the study lock (`storage.py`), the objective (`objective.py`) and
the ask-and-tell loop with its budgets and faults (`run.py`)."""

from automl_clf.search.run import SearchResult, run_search
from automl_clf.search.study import best_trial, load_existing_study, pareto_front

__all__ = ["SearchResult", "best_trial", "load_existing_study", "pareto_front", "run_search"]
