"""`python -m automl_clf.cli`: the `autoclf` command from a checkout."""

from automl_clf.cli.app import main

main()
