"""Deployments of the :mod:`flows.catalog` flows, and serving them (``pbrf serve``).

``prefect.serve`` registers each deployment with the server named by ``PREFECT_API_URL`` and
then polls it: a run started from the UI's Run button (with the parameters of its form), from
``prefect deployment run`` or by a schedule executes in a subprocess of the serving process, in
its working directory (``runs/`` lands there). No work pool is needed.
"""

from collections.abc import Sequence
from typing import Any

from flows.catalog import CATALOG


def parse_nightly(spec: str) -> tuple[str, str | None]:
    """``"digits-mlp:smoke"`` → ``("digits-mlp", "smoke")``; ``"cancer-lr"`` → ``(…, None)``."""
    preset, _, scale = spec.partition(":")
    return preset.strip(), (scale.strip() or None)


def nightly_name(preset: str, scale: str | None) -> str:
    return f"nightly-{preset}" + (f"-{scale}" if scale else "")


def deployments(
    nightly: Sequence[tuple[str, str | None]] = (),
    *,
    cron: str = "0 3 * * *",
    timezone: str = "UTC",
) -> list[Any]:
    """One on-demand deployment per catalog entry, plus a scheduled one per ``nightly`` preset
    for every entry that supports it."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    out = []
    for key, entry in CATALOG.items():
        flow = entry.load_flow()
        common = {"entrypoint_type": EntrypointType.MODULE_PATH, "tags": ["pbrf"]}
        out.append(
            flow.to_deployment(
                name=key,
                description=entry.description,
                schedules=[Cron(entry.schedule, timezone=timezone)] if entry.schedule else None,
                **common,
            )
        )
        if entry.nightly is None:
            continue
        for preset, scale in nightly:
            out.append(
                flow.to_deployment(
                    name=nightly_name(preset, scale),
                    description=f"Nightly reproduction of {preset}"
                    + (f" ({scale})" if scale else "")
                    + ", recomputed and compared with the previous run of the same code.",
                    schedules=[Cron(cron, timezone=timezone)],
                    parameters=entry.nightly(preset, scale),
                    **{**common, "tags": ["pbrf", "nightly"]},
                )
            )
    return out
