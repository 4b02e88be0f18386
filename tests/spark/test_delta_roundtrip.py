"""Delta Lake with the real jars: write, read, time travel, schema enforcement."""

import pytest

pytestmark = pytest.mark.spark


def test_delta_round_trip_time_travel_and_schema_enforcement(spark, tmp_path):
    from pyspark.errors import AnalysisException

    path = str(tmp_path / "t")
    spark.createDataFrame([(1, "a"), (2, "b")], "id int, s string").write.format("delta").save(path)
    spark.createDataFrame([(3, "c")], "id int, s string").write.format("delta").mode("append").save(path)

    assert sorted(r.id for r in spark.read.format("delta").load(path).collect()) == [1, 2, 3]
    v0 = spark.read.format("delta").option("versionAsOf", 0).load(path)
    assert sorted(r.id for r in v0.collect()) == [1, 2]
    assert (tmp_path / "t" / "_delta_log" / "00000000000000000001.json").exists()

    bad = spark.createDataFrame([("x", 1.5)], "id string, other double")
    with pytest.raises(AnalysisException, match="(?i)schema|merge"):
        bad.write.format("delta").mode("append").save(path)
    assert spark.read.format("delta").load(path).count() == 3  # the bad append left nothing behind
