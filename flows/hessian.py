"""The ``hessian-comparison`` flow: one study with Gauss-Newton Hessian influence and with
Hessian influence, then Tables 4 and 7 beside Tables 5 and 6 (Appendix F.1).

Both runs are ``decomposition`` subflows of the same preset, scale and overrides, differing only
in ``influence.curvature``, into ``<out>/gnh`` and ``<out>/hessian``. Before the Hessian run
starts, the GNH run's artifacts and manifests are copied into its directory (when it has none
yet): nodes that do not read the curvature (prepare, base training, selection, cold, warm,
proximal and paper-setting PBRF retraining) are then reused by the manifests, and only the
curvature, influence, matched PBRFs, aggregate and report run again. The comparison lands in
``<out>/report.md`` and as Prefect table artifacts.
"""

import shutil
from pathlib import Path
from typing import Any

from pydantic import Field

from flows import settings

settings.apply()

from prefect import flow  # noqa: E402
from prefect.artifacts import create_markdown_artifact, create_table_artifact  # noqa: E402

from flows.decomposition import DecompositionParams, decomposition  # noqa: E402
from flows.params import StudyParams  # noqa: E402
from pbrf.study.presets import load_preset  # noqa: E402

REPORT = "report.md"


class HessianComparisonParams(StudyParams):
    """What to compare: a preset at a scale plus overrides (applied to both runs), and where."""

    out: str | None = Field(
        None, description="directory of both runs (default: runs/PRESET[-SCALE]-hessian)"
    )

    def out_dir(self) -> Path:
        return self.run_dir(self.preset, "hessian")

    def run(self, curvature: str) -> DecompositionParams:
        return DecompositionParams(
            preset=self.preset,
            scale=self.scale,
            overrides={**self.overrides, "influence.curvature": curvature},
            out=str(self.out_dir() / curvature),
            device=self.device,
            refresh=self.refresh,
        )

    def validate_configs(self) -> None:
        """Both configs validate (before anything runs)."""
        for curvature in ("gnh", "hessian"):
            p = self.run(curvature)
            load_preset(p.preset, {**p.overrides, **_device(p)}, p.scale)


def _device(p: DecompositionParams) -> dict[str, Any]:
    return {"device": p.device} if p.device is not None else {}


def seed_from(source: Path, target: Path) -> bool:
    """Copy a finished run's artifacts and manifests into an empty ``target`` (not its lock or
    report); returns whether it copied. Manifests are relative, so the copy is reused as is."""
    if target.exists() or not (source / "config.json").is_file():
        return False

    def skip(folder: str, names: list[str]) -> list[str]:
        here = Path(folder).resolve()
        drop = {"report"} if here == source.resolve() else set()
        if here.name == ".pbrf":
            drop |= {n for n in names if n.startswith("lock")}
        return [n for n in names if n in drop or n.endswith(".tmp")]

    shutil.copytree(source, target, ignore=skip)
    return True


@flow(name="hessian-comparison", validate_parameters=True)
def hessian_comparison(
    params: HessianComparisonParams = HessianComparisonParams(),  # noqa: B008
) -> dict[str, Any]:
    """Run the study with GNH and with Hessian influence; write and publish Tables 4–7 (and 8
    when ``two_stage`` ran). Returns both runs' node states and the report path."""
    from tasks.engine.artifacts import write_text
    from tasks.reports.hessian_tables import comparison_markdown, comparison_tables, read_pair

    params.validate_configs()
    base = params.out_dir()
    results = {"gnh": decomposition(params.run("gnh"))}
    seed_from(base / "gnh", base / "hessian")
    results["hessian"] = decomposition(params.run("hessian"))
    dirs = {c: str(base / c) for c in ("gnh", "hessian")}
    runs = read_pair(dirs["gnh"], dirs["hessian"])
    text = comparison_markdown(runs, dirs)
    write_text(base / REPORT, text)
    key = "".join(ch if ch.isalnum() else "-" for ch in runs["gnh"].cfg.name.lower()).strip("-")
    tables = comparison_tables(runs)
    create_table_artifact(
        tables["gaps"], key=f"{key}-tables-4-5", description="Table 5 (GNH) and Table 4 (Hessian)"
    )
    create_table_artifact(
        tables["correlations"],
        key=f"{key}-tables-6-7",
        description="Table 6 (GNH) and Table 7 (Hessian); Table 8 rows when two_stage ran",
    )
    create_markdown_artifact(text, key=f"{key}-hessian", description="GNH vs Hessian")
    return {
        "out": str(base),
        "report": str(base / REPORT),
        "runs": {c: r["nodes"] for c, r in results.items()},
    }
