"""The report's quality section: per source, the documents scored, who dropped them, the score's quantiles."""

import numpy as np
import pandas as pd
import pytest

from jobs.transforms.report_quality import quality_by_source, quality_markdown


def _rows():
    books = [("books", s, None) for s in (0.9, 0.8, 0.95, 0.7)] + [("books", 0.2, "quality_low")]
    crawl = [("crawl", s, "quality_low") for s in (0.1, 0.05, 0.3)] + [("crawl", 0.6, None)]
    crawl += [("crawl", 0.4, "gopher_short_doc"), ("crawl", None, "c4_lorem_ipsum")]  # unscored: left out
    return pd.DataFrame(books + crawl, columns=["source", "quality_score", "drop_reason"])


def test_counts_and_quantiles_per_source():
    table = quality_by_source(_rows(), "quality_low").set_index("source")
    assert list(table.index) == ["books", "crawl"]
    assert table.loc["books", ["scored", "kept", "quality_low", "dropped_before"]].tolist() == [5, 4, 1, 0]
    assert table.loc["crawl", ["scored", "kept", "quality_low", "dropped_before"]].tolist() == [5, 1, 3, 1]
    crawl = np.array([0.1, 0.05, 0.3, 0.6, 0.4])
    assert table.loc["crawl", "q50"] == pytest.approx(np.quantile(crawl, 0.5))
    assert table.loc["books", "q10"] == pytest.approx(np.quantile([0.9, 0.8, 0.95, 0.7, 0.2], 0.1))


def test_markdown_has_one_row_per_source_and_says_when_there_is_no_classifier():
    md = quality_markdown(quality_by_source(_rows(), "quality_low"))
    rows = [line for line in md if line.startswith("| books") or line.startswith("| crawl")]
    assert rows[0].startswith("| books | 5 | 4 | 1 | 0 | ") and rows[1].startswith("| crawl | 5 | 1 | 3 | 1 | ")
    assert rows[1].endswith(f"| {np.quantile([0.1, 0.05, 0.3, 0.6, 0.4], 0.9):.3f} |")
    empty = quality_markdown(quality_by_source(_rows().assign(quality_score=None), "quality_low"))
    assert len(empty) == 1 and "without a quality classifier" in empty[0]
