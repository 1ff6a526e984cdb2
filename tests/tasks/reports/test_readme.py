"""The README tells the truth: its library example runs, its result block is written from a run
and checked against one, and every command it documents exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pipeline_fixtures import run_study, smoke_config
from repo_root import REPO

from flows.cli import main
from flows.cli.parser import build_parser
from tasks.reports import readme
from tasks.reports.results import Results

README = (REPO / "README.md").read_text(encoding="utf-8")


def _block(marker: str) -> str:
    after = README.split(marker, 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_library_example_runs_and_imports_only_pbrf(capsys) -> None:
    code = _block("<!-- example -->")
    imports = {m.group(1) for m in re.finditer(r"^(?:import|from) (\w+)", code, re.M)}
    assert imports == {"torch", "pbrf"}
    exec(compile(code, "README example", "exec"), {})  # the README's own code
    assert "spearman, n=20" in capsys.readouterr().out


def test_every_documented_command_parses() -> None:
    commands = set(re.findall(r"^\| `pbrf (\w+)", README, re.M))
    assert {
        "run",
        "presets",
        "params",
        "plan",
        "report",
        "readme",
        "step",
        "dvc",
        "data",
    } <= commands
    parser = build_parser()
    for cmd in commands:
        with pytest.raises(SystemExit) as info:
            parser.parse_args([cmd, "--help"])
        assert info.value.code == 0


@pytest.mark.slow
def test_result_blocks_are_written_from_a_run_and_checked_against_one(tmp_path: Path) -> None:
    cfg = smoke_config(retrain__variants=["cold", "warm", "pbrf"])
    run_study(tmp_path, cfg)
    res = Results.read(tmp_path, cfg)
    text = "intro\n<!-- results:x:start -->\nSTALE\n<!-- results:x:end -->\nrest\n"
    written = readme.replace(text, "x", readme.render(res, "x"))
    assert written.startswith("intro\n") and written.endswith("\nrest\n") and "STALE" not in written
    stated = readme.claims(written, "x")
    assert {c.what for c in stated} == {"mean", "pearson", "spearman"}
    assert readme.check(written, "x", res) == []
    # a claim the run does not reproduce is reported by name
    cold = next(c for c in stated if c.row.startswith("Cold") and c.what == "pearson")
    bad = written.replace(f"| {cold.row} | {cold.value:.2f}", f"| {cold.row} | 0.50", 1)
    bad_res = Results.read(tmp_path, cfg)
    bad_res.correlations.loc[bad_res.correlations["reference"] == "cold", "pearson"] = (
        cold.high + 0.2 if cold.high < 0.75 else cold.low - 0.2
    )
    problems = readme.check(written, "x", bad_res)
    assert len(problems) == 1 and "Cold-Start (LOO) pearson" in problems[0]
    assert bad  # the edited text is still parseable
    with pytest.raises(ValueError, match="no block"):
        readme.claims("nothing here", "x")


def test_reproduction_block_pairs_the_paper_setting_and_states_the_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    variants = ["cold", "warm", "proximal", "pbrf", "pbrf_paper", "linearized_pbrf_paper"]
    cfg = smoke_config(retrain__variants=variants)
    run = tmp_path / "run"
    run_study(run, cfg)
    res = Results.read(run, cfg)
    facts = readme.RunFacts("smoke", "digits (scikit-learn)", 90.0)
    block = readme.render(res, "x", facts)
    assert "`smoke` scale: mlp on digits (scikit-learn)" in block and "1.5 min" in block
    assert "| gap | mean ± std [95 % CI] | paper (Table 5) |" in block
    for title in ("Non-Convergence (paper setting)", "Linearization (paper setting)"):
        assert f"| {title} | " in block  # the paper's like, with the paper's value beside
    assert "| Non-Convergence | " in block and "this project's (matched PBRF)" in block
    assert f"| {readme.DIFF_ROW} | " in block
    stated = readme.claims(block, "x")
    assert {c.what for c in stated} == {"mean", "pearson", "spearman", "difference"}
    diff = next(c for c in stated if c.what == "difference")
    iv = readme.spearman_difference(res)
    assert iv is not None and diff.value == pytest.approx(iv.estimate, abs=0.005)
    assert readme.check(block, "x", res) == []
    # the CLI writes one block per run and checks them all
    doc = tmp_path / "README.md"
    doc.write_text(f"<!-- results:{cfg.name}:start -->\n<!-- results:{cfg.name}:end -->\n")
    assert main(["readme", str(run), str(run), "--file", str(doc)]) == 0
    assert "compute time" in doc.read_text(encoding="utf-8")
    assert main(["readme", str(run), str(run), "--file", str(doc), "--check"]) == 0
    assert main(["readme", str(run), str(run), "--name", "y", "--file", str(doc)]) == 2
    capsys.readouterr()
    # the summary: one line per run, the findings read from the same tables, checked exactly
    row = readme.summary_row(res, facts)
    f = readme.findings(res)
    assert row.startswith(f"| `{cfg.name}` | smoke; digits, N = ") and "1.5 min" in row
    assert f"{f.share:.1%}" in row and f"[{f.difference.low:.2f}, " in row
    doc.write_text("<!-- results:summary:start -->\n<!-- results:summary:end -->\n")
    assert main(["readme", "--summary", str(run), "--file", str(doc)]) == 0
    written = doc.read_text(encoding="utf-8")
    assert written.count(f"| `{cfg.name}` |") == 1 and "first three gaps' share" in written
    assert main(["readme", "--summary", str(run), "--file", str(doc), "--check"]) == 0
    doc.write_text(written.replace(f"{f.share:.1%}", "12.3%"))
    assert main(["readme", "--summary", str(run), "--file", str(doc), "--check"]) == 1
    assert "summary: " in capsys.readouterr().err
    # every row of Tables 5 and 2 not measured at the paper's settings is listed, with its command
    pending = readme.pending_rows({cfg.name: "smoke", "mnist-mlp": "cpu", "concrete-mlp": "paper"})
    assert "- `ptb-transformer` (transformer_lm on ptb): needs a GPU" in "\n".join(pending)
    assert any(p.startswith("- `mnist-mlp` (mlp on mnist; measured here at the `cpu` scale)")
               for p in pending)  # fmt: skip
    assert not any("`concrete-mlp`" in p or "digits-mislabel" in p for p in pending)
    assert any(p.endswith("`pbrf data fetch energy && pbrf run energy-mlp`") for p in pending)
    assert all(line in written for line in readme.pending_rows({cfg.name: "smoke"}))
    doc.write_text("\n".join(x for x in written.splitlines() if "`energy-mlp`" not in x))
    assert main(["readme", "--summary", str(run), "--file", str(doc), "--check"]) == 1
    assert "the rows not measured should read" in capsys.readouterr().err
    assert main(["readme", "--summary", str(run), "--name", "y", "--file", str(doc)]) == 2
