"""Pipeline steps of the decomposition study (GUIDE §2–§3).

Each step is one plain function ``step(out, cfg, ...)`` that reads artifacts from the run
directory ``out``, calls :mod:`pbrf` and writes its artifacts atomically:

==============  =====================================  ==========================================
step            module                                 writes (under ``out/``)
==============  =====================================  ==========================================
prepare         :mod:`tasks.prepare`                   ``prepare/dataset.pt``
train_base      :mod:`tasks.train_base`                ``base/theta0.pt``, ``base/theta_s.pt``,
                                                       ``base/orders.pt``, ``base/history.parquet``
select          :mod:`tasks.selection`                 ``select/removed.parquet``,
                                                       ``select/test_points.parquet``
retrain         :mod:`tasks.retrain` (per variant)     ``retrain/<variant>/params.pt``, ``…/removals.parquet``,
                                                       ``…/history.parquet``
influence       :mod:`tasks.influence`                 ``influence/params.pt``, ``…/removals.parquet``,
                                                       ``…/solver.parquet``
aggregate       :mod:`tasks.aggregate`                 ``aggregate/*.parquet`` (Table 5, Table 2, horizons)
report          :mod:`tasks.report`                    ``report/report.md``, PNGs, ``metrics.json``, CSVs
==============  =====================================  ==========================================

Prefect ``@task`` wrappers live in :mod:`tasks.prefect_tasks`; DVC stages call the same functions
through ``pbrf step …`` (:mod:`flows.cli`). Every Parquet schema is documented in
:mod:`tasks.schemas`; every artifact carries the hash of the config keys it depends on
(:mod:`tasks.fingerprint`) and is verified on load (:mod:`tasks.artifacts`).
"""
