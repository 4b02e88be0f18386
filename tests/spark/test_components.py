"""Connected components in Spark against a union-find reference."""

import random

import pytest

from jobs.transforms.components import connected_components

pytestmark = pytest.mark.spark


def _union_find(edges):
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in list(parent)}


@pytest.fixture
def staged(spark, tmp_path):
    """A staging materializer like dedup's: each round's edges written as Parquet and read back."""
    names = []

    def stage(df, name):
        names.append(name)
        df.write.parquet(str(tmp_path / name))
        return spark.read.parquet(str(tmp_path / name))

    stage.names = names
    return stage


def _run(spark, edges, dtype="string", materialize=None):
    df = spark.createDataFrame(edges, f"src {dtype}, dst {dtype}")
    comps, rounds = connected_components(df, materialize=materialize)
    return {r.node: r.component for r in comps.collect()}, rounds


def test_chain_is_one_component_transitively(spark):
    # A~B and B~C but A and C never share an edge: one cluster, labelled by its smallest id
    got, _ = _run(spark, [("doc-b", "doc-a"), ("doc-c", "doc-b"), ("x2", "x1")])
    assert got == {"doc-a": "doc-a", "doc-b": "doc-a", "doc-c": "doc-a", "x1": "x1", "x2": "x1"}


def test_long_path_and_giant_star_match_union_find(spark, staged):
    rng = random.Random(7)
    nodes = list(range(2000))
    rng.shuffle(nodes)
    path = [(nodes[i], nodes[i + 1]) for i in range(299)]  # a 300-node path in random id order
    star = [(5000, 5001 + i) for i in range(1500)]  # a giant bucket: one hub, 1500 members
    random_edges = [(rng.randrange(10_000, 10_400), rng.randrange(10_000, 10_400)) for _ in range(300)]
    edges = path + star + random_edges
    got, rounds = _run(spark, edges, "long", materialize=staged)
    want = _union_find(edges)
    assert got == want
    assert rounds < 30
    assert staged.names == [f"cc-round-{i}" for i in range(rounds + 1)]  # every round came from its staged copy
