"""jobs/transforms/splits.py pure rules: per-stratum val counts and the splits that are refused."""

import pytest

from jobs.transforms.splits import check_split_request, stratum_val_count


@pytest.mark.parametrize(
    ("n", "fraction", "expected"),
    [
        (0, 0.05, 0),
        (9, 0.05, 0),
        (10, 0.05, 1),
        (104, 0.05, 5),
        (110, 0.05, 6),
        (277, 0.05, 14),
        (124, 0.01, 1),
        (2, 0.9, 2),
        (5, 0.0, 0),
    ],
)
def test_stratum_val_count(n, fraction, expected):
    assert stratum_val_count(n, fraction) == expected


@pytest.mark.parametrize(
    ("n", "fraction", "message"),
    [
        (1, 0.01, "has 1 document: it cannot be split into train and val; pass --val-fraction 0"),
        (0, 0.01, "has no documents"),
        (10, 1.0, r"val_fraction must be in \[0, 1\), got 1.0"),
        (10, -0.1, r"val_fraction must be in \[0, 1\)"),
    ],
)
def test_refused_splits(n, fraction, message):
    with pytest.raises(ValueError, match=message):
        check_split_request(n, fraction)


def test_accepted_splits():
    check_split_request(1, 0.0)  # one document, explicitly no val
    check_split_request(2, 0.01)
