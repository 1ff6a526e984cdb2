"""Pipeline steps of the decomposition study: plain functions, artifacts in and out.

The one registry of steps is :mod:`tasks.registry`; :mod:`tasks.plan` expands it into the
concrete nodes of a run, :mod:`tasks.runner` runs or reuses a node (content manifests in
:mod:`tasks.manifest`), and each step is ``def step(ctx: StepContext) -> None``
(:mod:`tasks.context`) in its own module. Every Parquet schema is in :mod:`tasks.schemas`.
Nothing here imports Prefect: orchestration lives in :mod:`flows`.
"""
