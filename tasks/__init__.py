"""Pipeline steps of the decomposition study: plain functions, artifacts in and out.

The one registry of steps is :mod:`tasks.registry`; :mod:`tasks.engine.plan` expands it into the
concrete nodes of a run, :mod:`tasks.engine.runner` runs or reuses a node (content manifests in
:mod:`tasks.engine.manifest`), and each step is ``def step(ctx: StepContext) -> None``
(:mod:`tasks.engine.context`) in its own module. Every Parquet schema is in :mod:`tasks.schemas`.
Nothing here imports Prefect: orchestration lives in :mod:`flows`.
"""
