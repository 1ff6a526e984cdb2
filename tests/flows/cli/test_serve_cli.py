"""`pbrf serve` refuses bad input with one line naming the flag, exit status 2, before it
contacts any server; the deployments it would serve come from the catalog."""

from __future__ import annotations

import pytest

from flows.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nightly", "nosuch"], "--nightly: unknown preset 'nosuch'"),
        (["--nightly", "digits-mlp:huge"], "--nightly: preset 'digits-mlp' has no scale 'huge'"),
        (["--cron", "every night"], "--cron: Invalid cron string"),
        (["--timezone", "Mars/Olympus"], "--timezone: Invalid timezone"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # never contacted
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_serve_needs_a_lasting_server(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["serve"]) == 2
    assert "prefect server start" in capsys.readouterr().err


def test_deployments_of_the_catalog_and_a_nightly_preset() -> None:
    from flows.catalog import CATALOG
    from flows.serve import deployments

    deps = {d.name: d for d in deployments([("cancer-lr", "smoke")], cron="15 1 * * *")}
    assert set(deps) == {*CATALOG, "nightly-cancer-lr-smoke"}
    nightly = deps["nightly-cancer-lr-smoke"]
    assert nightly.entrypoint == "flows.decomposition.decomposition"
    assert nightly.schedules[0].schedule.cron == "15 1 * * *"
    assert nightly.parameters == {
        "params": {"preset": "cancer-lr", "scale": "smoke", "refresh": True, "drift_check": True}
    }
    assert not deps["decomposition"].schedules  # on demand: the Run button


def test_every_catalog_flow_has_a_form_the_ui_can_render() -> None:
    """Each served flow's parameters become a form: an entrypoint that resolves, a schema with
    fields, and descriptions without angle brackets (the UI renders them as HTML)."""
    import json

    from flows.catalog import CATALOG
    from flows.serve import deployments

    deps = {d.name: d for d in deployments([], cron="0 3 * * *")}
    assert set(deps) == set(CATALOG) >= {"decomposition", "grade", "sweep", "hessian-comparison"}
    from prefect.utilities.callables import parameter_schema

    for name, dep in deps.items():
        assert dep.entrypoint.startswith("flows."), dep.entrypoint
        schema = json.dumps(parameter_schema(CATALOG[name].load_flow()).model_dump())
        assert '"params"' in schema and "<" not in schema and ">" not in schema, (name, schema)
