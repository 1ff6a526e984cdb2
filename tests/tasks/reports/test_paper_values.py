"""The transcribed reference numbers: shape, spot values, and the paper's own cross-references."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tasks.reports.paper import (
    CORRELATION_TABLES,
    GAP_COLUMNS,
    KEY,
    paper_correlations,
    paper_gaps,
    paper_values,
)

GAP_ROWS_T5 = [
    ("logistic_regression", "cancer"),
    ("logistic_regression", "diabetes"),
    ("mlp", "concrete"),
    ("mlp", "energy"),
    ("mlp", "mnist"),
    ("mlp", "fashion_mnist"),
    ("autoencoder", "mnist"),
    ("lenet", "mnist"),
    ("alexnet", "mnist"),
    ("vgg13", "mnist"),
    ("resnet20", "mnist"),
    ("lenet", "cifar10"),
    ("alexnet", "cifar10"),
    ("vgg13", "cifar10"),
    ("resnet20", "cifar10"),
    ("transformer_lm", "ptb"),
]
MLP_DATASETS = ["concrete", "energy", "mnist", "fashion_mnist"]

# (table, model, dataset, column, statistic, value as printed in the paper)
SPOT = [
    ("5", "lenet", "mnist", "warm_start", "mean", 7.434),
    ("5", "lenet", "mnist", "warm_start", "std", 1.068),
    ("5", "alexnet", "mnist", "warm_start", "mean", 13.403),  # dataset cell blank in the paper
    ("5", "alexnet", "mnist", "non_convergence", "mean", 0.118),
    ("5", "resnet20", "cifar10", "proximity", "std", 0.669),
    ("5", "vgg13", "cifar10", "solver", "std", 0.161),
    ("5", "transformer_lm", "ptb", "linearization", "mean", 5.002),
    ("5", "autoencoder", "mnist", "non_convergence", "mean", 11.409),
    ("5", "mlp", "mnist", "warm_start", "std", 0.732),
    ("5", "mlp", "concrete", "solver", "mean", 0.001),
    ("4", "mlp", "concrete", "solver", "mean", 0.017),
    ("4", "mlp", "fashion_mnist", "solver", "std", 0.014),
    ("2", "mlp", "mnist", "cold", "pearson", -0.55),
    ("2", "vgg13", "mnist", "warm", "spearman", -0.51),
    ("2", "lenet", "mnist", "pbrf", "spearman", 0.52),
    ("2", "resnet20", "mnist", "pbrf", "pearson", 0.81),
    ("6", "mlp", "mnist", "cold", "pearson", -0.10),
    ("6", "mlp", "fashion_mnist", "pbrf", "pearson", 0.90),
    ("7", "mlp", "energy", "cold", "spearman", -0.24),
    ("8", "mlp", "energy", "two_stage", "pearson", 0.92),
    ("8", "mlp", "fashion_mnist", "two_stage", "spearman", 0.52),
]


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return paper_values()


def test_columns_and_types(df):
    columns = ["table", "model", "dataset", "column", "statistic", "value", "source"]
    assert list(df.columns) == columns
    assert df["value"].dtype == "float64"
    for col in ("table", "model", "dataset", "column", "statistic", "source"):
        assert all(isinstance(v, str) and v for v in df[col])


def test_row_counts_per_table(df):
    counts = df.groupby("table").size().to_dict()
    # 2: 5 models × 3 schemes × P/S; 4: 4 rows × 5 gaps × mean/std; 5: 16 rows × 5 × 2;
    # 6, 7, 8: 4 data sets × 3 schemes × P/S
    assert counts == {"2": 30, "4": 40, "5": 160, "6": 24, "7": 24, "8": 24}


def test_every_row_is_complete(df):
    t5 = df[df["table"] == "5"]
    assert sorted(set(zip(t5["model"], t5["dataset"], strict=True))) == sorted(GAP_ROWS_T5)
    assert sorted(set(df[df["table"] == "4"]["dataset"])) == sorted(MLP_DATASETS)
    for table in ("4", "5"):
        t = df[df["table"] == table]
        assert (t.groupby(["model", "dataset"]).size() == 10).all()
        assert set(t["column"]) == set(GAP_COLUMNS)
    t2 = df[df["table"] == "2"]
    assert set(t2["model"]) == {"mlp", "lenet", "alexnet", "vgg13", "resnet20"}
    assert set(t2["dataset"]) == {"mnist"}
    for table in ("6", "7", "8"):
        t = df[df["table"] == table]
        assert set(t["model"]) == {"mlp"} and sorted(set(t["dataset"])) == sorted(MLP_DATASETS)
    schemes = {t: set(df[df["table"] == t]["column"]) for t in CORRELATION_TABLES}
    assert schemes == {
        "2": {"cold", "warm", "pbrf"},
        "6": {"cold", "warm", "pbrf"},
        "7": {"cold", "warm", "pbrf"},
        "8": {"two_stage", "warm", "pbrf"},
    }


def test_values_finite_unique_and_in_range(df):
    assert df["value"].map(math.isfinite).all()
    assert not df.duplicated(list(KEY)).any()
    corr = df[df["statistic"].isin(["pearson", "spearman"])]
    assert corr["value"].between(-1, 1).all()
    assert (df[df["statistic"].isin(["mean", "std"])]["value"] >= 0).all()


@pytest.mark.parametrize(("table", "model", "dataset", "column", "statistic", "value"), SPOT)
def test_spot_values(df, table, model, dataset, column, statistic, value):
    row = df[
        (df["table"] == table)
        & (df["model"] == model)
        & (df["dataset"] == dataset)
        & (df["column"] == column)
        & (df["statistic"] == statistic)
    ]
    assert len(row) == 1
    assert row["value"].iloc[0] == value  # the CSV holds the printed decimal, parsed once
    assert row["source"].iloc[0].startswith(f"Table {table}, row ")


def test_sources_name_table_row_and_column(df):
    assert (df.apply(lambda r: r["source"].startswith(f"Table {r['table']}, row "), axis=1)).all()
    assert df["source"].str.contains(", column ").all()
    gaps = df[df["statistic"].isin(["mean", "std"])]
    assert gaps.apply(lambda r: r["source"].endswith(f"({r['statistic']})"), axis=1).all()
    corr = df[~df.index.isin(gaps.index)]
    letters = corr["statistic"].map({"pearson": " P", "spearman": " S"})
    assert all(s.endswith(x) for s, x in zip(corr["source"], letters, strict=True))


def test_the_papers_own_cross_references(df):
    """Where the paper says two tables share numbers, the transcriptions agree."""

    def pick(table, **eq):
        t = df[df["table"] == table]
        for k, v in eq.items():
            t = t[t[k] == v]
        return t.set_index(["model", "dataset", "column", "statistic"])["value"].sort_index()

    # Table 4 = Table 5's MLP rows except the solver column (influence without the GNH)
    for gap in GAP_COLUMNS[:4]:
        pd.testing.assert_series_equal(
            pick("4", column=gap), pick("5", model="mlp", column=gap), check_names=False
        )
    assert not pick("4", column="solver").equals(pick("5", model="mlp", column="solver"))
    # Table 8's Warm-Start and PBRF columns repeat Table 7's
    for scheme in ("warm", "pbrf"):
        pd.testing.assert_series_equal(pick("8", column=scheme), pick("7", column=scheme))
    # Table 6's MNIST warm-start row matches Table 2's MLP row
    assert paper_correlations("mlp", "mnist", "6")["warm"] == {"pearson": 0.22, "spearman": 0.35}
    assert paper_correlations("mlp", "mnist", "2")["warm"] == {"pearson": 0.22, "spearman": 0.35}


def test_helpers():
    gaps = paper_gaps("transformer_lm", "ptb")
    assert list(gaps) == list(GAP_COLUMNS)
    assert gaps["warm_start"] == {"mean": 57.926, "std": 5.055}
    assert gaps["solver"] == {"mean": 3.316, "std": 2.630}
    assert paper_gaps("mlp", "concrete", table=4)["solver"] == {"mean": 0.017, "std": 0.026}
    assert paper_gaps("lenet", "mnist", table="4") == {}
    assert paper_gaps("mlp", "cifar10") == {}
    corr = paper_correlations("alexnet", "mnist")
    assert corr == {
        "cold": {"pearson": -0.16, "spearman": -0.08},
        "warm": {"pearson": 0.51, "spearman": 0.58},
        "pbrf": {"pearson": 0.99, "spearman": 0.99},
    }
    assert list(paper_correlations("mlp", "energy", "8")) == ["warm", "pbrf", "two_stage"]
    assert paper_correlations("mlp", "cifar10") == {}
    assert paper_correlations("resnet20", "mnist", "6") == {}
    with pytest.raises(ValueError, match="table"):
        paper_gaps("mlp", "mnist", table="2")
    with pytest.raises(ValueError, match="table"):
        paper_correlations("mlp", "mnist", table=5)


def test_paper_values_returns_a_copy():
    a = paper_values()
    a.loc[0, "value"] = 123.0
    assert paper_values().loc[0, "value"] != 123.0
