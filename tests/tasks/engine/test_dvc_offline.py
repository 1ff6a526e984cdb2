"""DVC as a daily user meets it: ``dvc exp run -S`` leaves ``params.yaml`` as written but for the
line it sets, and ``dvc plots show`` builds a page that needs no network."""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from repo_root import REPO

from flows.cli import main

BIN = Path(sys.executable).parent
DVC = shutil.which("dvc", path=str(BIN)) or shutil.which("dvc")


@pytest.mark.parametrize(
    ("preset", "setting", "line"),
    [
        ("digits-mlp", "train.epochs=7", "  epochs: 7"),
        ("digits-mlp", "damping=0.01", "damping: 0.01"),
        ("cancer-lr", "select.seed=3", "  seed: 3"),
    ],
)
def test_dvc_set_param_changes_only_the_line_it_sets(
    preset: str, setting: str, line: str, tmp_path: Path
) -> None:
    """What ``dvc exp run -S`` does to the file (DVC's own ``apply_overrides``: ruamel round trip
    and DVC's dumper); before, every ``null`` came back as an empty value."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    assert main(["params", preset, "--scale", "smoke", "-o", str(path)]) == 0
    before = path.read_text()
    assert "null" in yaml.safe_dump(yaml.safe_load(before))  # the case that used to change
    apply_overrides(path, [setting])
    after = path.read_text()
    changed = [
        d for d in difflib.ndiff(before.splitlines(), after.splitlines()) if d[:2] in ("- ", "+ ")
    ]
    assert len(changed) == 2 and changed[1] == f"+ {line}", changed


def test_the_committed_params_yaml_is_in_dvc_form(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    assert main(["params", "-o", str(path)]) == 0
    assert (REPO / "params.yaml").read_text() == path.read_text()


PLOTS = """plots:
- scatter_plot:
    template: scatter
    x: influence
    y:
      loss.csv: cold
- bars:
    template: bar_horizontal
    x: mean
    y:
      gaps.csv: gap
- lines:
    x: step
    y:
      loss.csv: warm
"""


@pytest.mark.skipif(DVC is None, reason="needs the dvc command")
@pytest.mark.slow
def test_dvc_plots_show_needs_no_network(tmp_path: Path) -> None:
    """With the repository's ``.dvc/config`` the page inlines Vega, Vega-Lite and Vega-Embed:
    no URL anywhere, no tag loading a ``src``/``href``, one embedded plot per definition."""
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    shutil.copy(REPO / ".dvc" / "config", tmp_path / ".dvc" / "config")
    shutil.copytree(REPO / ".dvc" / "plots", tmp_path / ".dvc" / "plots")
    (tmp_path / "loss.csv").write_text(
        "step,influence,cold,warm\n" + "".join(f"{i},{i / 10},{i / 9},{i / 8}\n" for i in range(8))
    )
    (tmp_path / "gaps.csv").write_text("gap,mean\nwarm_start,0.5\nproximity,0.2\n")
    (tmp_path / "dvc.yaml").write_text(PLOTS)
    subprocess.run(
        [DVC, "plots", "show", "-o", "dvc_plots"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        env={"PATH": str(BIN), "HOME": str(tmp_path), "DVC_NO_ANALYTICS": "1"},
    )
    html = (tmp_path / "dvc_plots" / "index.html").read_text()
    assert not re.findall(r"https?://", html)
    markup = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.DOTALL)  # inline code out
    assert not re.findall(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=", markup)
    assert html.count("vegaEmbed('#") == 3
    for library in ("vega@", "vega-lite@", "vega-embed@"):
        assert f"/* {library}" in html
