"""The ``hessian-comparison`` flow under ``prefect_test_harness``: two decomposition subflows
(GNH, Hessian) where the second reuses every node that does not read the curvature, Tables 4–7
in ``report.md``, and every study's table artifacts (Tables 4–7, Table 8, Figure 6)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.hessian import HessianComparisonParams, hessian_comparison
from tasks.reports.hessian_tables import read_pair

pytestmark = pytest.mark.slow  # flows under prefect_test_harness

prefect_testing = pytest.importorskip("prefect.testing.utilities")

# damping above the smoke network's most negative Hessian eigenvalue (≈ −0.5), so LiSSA
# converges on the Hessian; two_stage and mislabel publish their own artifacts in both runs
OVERRIDES = {"damping": 0.6, "retrain.variants": ["warm", "pbrf", "two_stage"], "mislabel": {}}
CURVATURE_FREE = {"prepare", "train_base", "select", "retrain-warm", "retrain-two_stage"}


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with prefect_testing.prefect_test_harness(server_startup_timeout=120):
        yield


def test_the_hessian_run_reuses_the_gnh_run_and_tables_4_to_8_are_published(
    harness: None, tmp_path: Path
) -> None:
    params = HessianComparisonParams(
        preset="digits-mlp", scale="smoke", overrides=OVERRIDES, out=str(tmp_path / "cmp")
    )
    result = hessian_comparison(params)
    gnh, hessian = result["runs"]["gnh"], result["runs"]["hessian"]
    assert set(v["state"] for v in gnh.values()) == {"Completed"}
    reused = {k for k, v in hessian.items() if v["state"] == "Cached"}
    assert reused >= CURVATURE_FREE and "influence" not in reused and "spectrum" not in reused
    read_pair(tmp_path / "cmp/gnh", tmp_path / "cmp/hessian")  # same study but the curvature
    for rel in ("retrain/warm/shard-0/delta.pt", "retrain/two_stage/shard-0/delta.pt"):
        a, b = ((tmp_path / "cmp" / c / rel).read_bytes() for c in ("gnh", "hessian"))
        assert a == b, rel
    md = Path(result["report"]).read_text()
    for text in ("## Gaps: Table 5 (GNH) and Table 4 (Hessian)", "| 4 (paper, mlp/mnist) |",
                 "| 7 (paper, mlp/mnist) | Hessian | -0.16 | -0.12 |",
                 "| 8 (paper, mlp/mnist) | Hessian | 0.73 | 0.53 |"):  # fmt: skip
        assert text in md, text
    from prefect.artifacts import Artifact

    D = "digits-mlp-smoke-decomposition"  # preset, scale and flow of the two study runs
    for key in ("digits-mlp-tables-4-5", "digits-mlp-tables-6-7", "digits-mlp-hessian",
                f"{D}-table8-two-stage", f"{D}-figure6-mislabel"):  # fmt: skip
        assert Artifact.get(key) is not None, key
    assert "random" in str(Artifact.get(f"{D}-figure6-mislabel").data)
