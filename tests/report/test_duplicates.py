"""The report's near-duplicates section, on real digits with near-duplicate copies."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from automl_clf.data import load_dataset
from automl_clf.report.duplicates import MAX_CLUSTERS, MAX_FILES, summarise_near_duplicates
from automl_clf.report.write import write_report
from tests.data.test_near_duplicates import data_spec, digits_with_copies
from tests.report.test_write import hostile_content


def test_the_clusters_that_straddled_splits_are_shown_first_with_thumbnails(
    tmp_path: Path,
) -> None:
    copies = digits_with_copies(tmp_path / "data", per_kind=3)
    dataset = load_dataset(data_spec(tmp_path / "data", near_duplicates="warn"))
    summary = summarise_near_duplicates(dataset)
    assert summary is not None and summary.n_clusters == len(copies) > MAX_CLUSTERS
    assert 0 < summary.n_straddled < summary.n_clusters  # some straddled, some did not
    assert len(summary.shown) == MAX_CLUSTERS
    straddled = [c.straddled for c in summary.shown]
    assert straddled == sorted(straddled, reverse=True)  # those that straddled first
    for cluster in summary.shown:
        assert len(cluster.images) == len(cluster.files) <= MAX_FILES
        assert all(i is not None and i.shape == (48, 48) for i in cluster.images)  # grey digits

    content = dataclasses.replace(hostile_content(), near_duplicates=summary)
    drawn = write_report(content, tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text()
    section = page[page.index('<section id="near-duplicates">') :]
    section = section[: section.index("</section>")]
    assert f"{len(copies)} cluster(s) of near-duplicate images" in section
    assert "held-out scores may be inflated" in section  # warn: the one-line summary
    assert len(re.findall(r'src="data:image/png;base64,', section)) == 1
    shown = summary.shown[0]
    assert all(name in section for name in shown.files)
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "## Near-duplicates" in markdown and "near_duplicates.png" in markdown
    # a figure small enough to keep the page quick to open
    assert drawn["near_duplicates"].stat().st_size < 200_000


def test_without_clusters_the_section_says_so_and_draws_nothing(tmp_path: Path) -> None:
    from automl_clf.datasets import write_digits

    root = write_digits(tmp_path / "data", classes=[0, 1], per_class=20)
    summary = summarise_near_duplicates(load_dataset(data_spec(root)))
    assert summary is not None and summary.n_clusters == 0
    content = dataclasses.replace(hostile_content(), near_duplicates=summary)
    drawn = write_report(content, tmp_path / "report")
    assert "near_duplicates" not in drawn
    page = (tmp_path / "report" / "index.html").read_text()
    assert "No near-duplicate images" in page
