"""Study storages (search/storage.py): every registered scheme opens and locks its workers, and
a URL of any other scheme is refused naming the known ones, never opened without a lock."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from automl_clf.cli import app
from automl_clf.errors import SpecError
from automl_clf.search.storage import STORAGES, StudyLock, open_storage, storage_scheme
from tests.conftest import tiny_spec, write_spec

KNOWN = f"known storage schemes: {', '.join(STORAGES.kinds)})"


@pytest.mark.parametrize("scheme", STORAGES.kinds)
def test_every_scheme_locks_the_workers_of_a_study(scheme: str) -> None:
    entry = STORAGES[scheme]()
    url = entry.example
    assert storage_scheme(url).__class__ is STORAGES[scheme]
    lock = StudyLock(url, "tiny")
    assert (lock.file is not None) != (entry.advisory_lock(lock.key) is not None), scheme


def test_a_driver_suffix_names_the_same_scheme() -> None:
    assert isinstance(storage_scheme("postgresql+psycopg://u@host/db"), STORAGES["postgresql"])


@pytest.mark.parametrize("url", ["postgress://u@host/db", "mssql://u@host/db", "studies/x.db"])
def test_an_unknown_scheme_is_refused_before_anything_opens(url: str) -> None:
    with pytest.raises(SpecError, match=r"study\.storage: unknown storage scheme") as raised:
        open_storage(url)
    assert KNOWN in str(raised.value) and repr(url) in str(raised.value)
    with pytest.raises(SpecError, match="unknown storage scheme"):
        StudyLock(url, "tiny")  # never a lock that locks nothing


def test_validate_refuses_an_unknown_scheme_with_exit_2(tmp_path: Path, digits_root: Path) -> None:
    raw = tiny_spec(digits_root, tmp_path, study={"storage": "postgress://u@host/db"})
    result = CliRunner().invoke(app, ["validate", str(write_spec(tmp_path / "s.yaml", raw))])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "unknown storage scheme 'postgress' (did you mean 'postgresql'?" in output
    assert "Traceback" not in result.output
