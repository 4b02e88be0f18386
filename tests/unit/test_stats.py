"""The per-stage funnel built from recorded job counts (jobs/stats.py, pure part)."""

import pytest

from jobs.transforms.funnel import funnel_rows, plot_funnel, stage_of


@pytest.mark.parametrize(
    "job,reason,stage",
    [
        ("curate", "empty_text", "normalize"),
        ("curate", "lang_low_score", "langid"),
        ("curate", "gopher_rep_top_2_gram", "gopher_repetition"),
        ("curate", "gopher_short_doc", "gopher_quality"),
        ("curate", "c4_too_few_sentences", "c4"),
        ("curate", "fineweb_line_punct_ratio", "fineweb"),
        ("curate", "something_new", "other"),
        ("dedup", "dedup_exact", "dedup_exact"),
        ("dedup", "dedup_fuzzy", "dedup_fuzzy"),
        ("ingest", "invalid_json", "ingest"),
    ],
)
def test_stage_of(job, reason, stage):
    assert stage_of(job, reason) == stage


def test_funnel_chains_stages_and_accounts_for_every_document():
    counts = {
        "ingest": {
            "read": 120,
            "written": 100,
            "unchanged": 0,
            "quarantined": 20,
            "quarantined_invalid_json": 15,
            "quarantined_empty_text": 5,
        },
        "curate": {
            "total": 100,
            "kept": 60,
            "dropped": 40,
            "dropped_empty_text": 2,
            "dropped_gopher_short_doc": 20,
            "dropped_gopher_rep_top_2_gram": 8,
            "dropped_c4_too_few_sentences": 6,
            "dropped_fineweb_line_punct_ratio": 3,
            "dropped_mystery": 1,
        },
        "dedup": {
            "total": 60,
            "kept": 50,
            "written": 50,
            "dropped": 10,
            "dropped_dedup_exact": 4,
            "dropped_dedup_fuzzy": 6,
        },
    }
    rows = funnel_rows(counts, {"curate": "r1"})
    assert [(r["job"], r["stage"]) for r in rows] == [
        ("ingest", "ingest"),
        ("curate", "normalize"),
        ("curate", "langid"),
        ("curate", "gopher_repetition"),
        ("curate", "gopher_quality"),
        ("curate", "c4"),
        ("curate", "fineweb"),
        ("curate", "other"),
        ("dedup", "dedup_exact"),
        ("dedup", "dedup_fuzzy"),
    ]
    assert [r["step"] for r in rows] == list(range(len(rows)))
    for r in rows:
        assert r["in"] == r["kept"] + r["dropped"]
        assert r["dropped"] == sum(r["reasons"].values())
    curate = [r for r in rows if r["job"] == "curate"]
    for before, after in zip(curate, curate[1:]):
        assert after["in"] == before["kept"]
    assert curate[0]["in"] == 100 and curate[-1]["kept"] == counts["curate"]["kept"]
    assert rows[0]["dropped"] == 20 and rows[0]["reasons"] == {"invalid_json": 15, "empty_text": 5}
    assert rows[-1]["kept"] == 50 and curate[0]["run_id"] == "r1" and rows[0]["run_id"] == ""


def test_funnel_without_other_drops_has_no_other_stage_and_skips_missing_jobs():
    rows = funnel_rows({"dedup": {"total": 5, "dropped_dedup_fuzzy": 2}})
    assert [(r["stage"], r["in"], r["kept"]) for r in rows] == [("dedup_exact", 5, 5), ("dedup_fuzzy", 5, 3)]
    assert funnel_rows({}) == []


def test_plot_funnel_writes_a_png(tmp_path):
    rows = funnel_rows({"curate": {"total": 10, "dropped_gopher_short_doc": 3}})
    plot_funnel(rows, str(tmp_path / "f.png"))
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
