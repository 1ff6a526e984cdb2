"""Two studies never share artifact keys or a default run directory."""

from __future__ import annotations

from flows.decomposition import DecompositionParams
from flows.grade import GradeParams
from flows.publish import artifact_scope, correlation_rows, gap_rows


def test_artifact_keys_name_preset_scale_and_flow() -> None:
    assert artifact_scope("digits-mlp", "smoke", "decomposition") == (
        "digits-mlp-smoke-decomposition"
    )
    scopes = {
        artifact_scope(p, s, f)
        for p in ("digits-mlp", "mnist-mlp")
        for s in ("smoke", "paper", None)
        for f in ("decomposition", "grade")
    }
    assert len(scopes) == 12  # every preset × scale × flow publishes under its own keys


def test_a_grade_run_never_defaults_to_a_decomposition_directory() -> None:
    for scale in ("smoke", "paper", None):
        run = DecompositionParams(preset="digits-mlp", scale=scale).out_dir()
        grade = GradeParams(preset="digits-mlp", scale=scale).out_dir()
        assert grade != run and grade.name.endswith("-grade"), (run, grade)


def test_table_artifacts_have_human_headers() -> None:
    """The column names a person reads in the Prefect UI, not the Parquet schema's."""
    from types import SimpleNamespace

    import pandas as pd

    res = SimpleNamespace(
        gaps=pd.DataFrame(
            [{"gap": "warm_start", "mean": 0.5, "std": 0.2, "ci_low": 0.4, "ci_high": 0.6, "n": 20}]
        ),
        correlations=pd.DataFrame(
            [
                {
                    "reference": "cold",
                    **{f"{k}{e}": v for k in ("pearson", "spearman") for e, v in
                       (("", 0.9), ("_low", 0.8), ("_high", 0.95))},
                    "n": 20,
                }
            ]
        ),
    )  # fmt: skip
    assert list(gap_rows(res)[0]) == ["Gap", "Mean", "SD", "CI low", "CI high", "n"]
    assert list(correlation_rows(res)[0]) == [
        "Reference", "Pearson", "Pearson 95 % CI", "Spearman", "Spearman 95 % CI", "n",
    ]  # fmt: skip
