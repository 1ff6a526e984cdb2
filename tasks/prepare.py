"""Step ``prepare``: the split, standardized data set as one tensor checkpoint."""

from __future__ import annotations

from tasks.context import StepContext


def prepare(ctx: StepContext) -> None:
    """Write ``prepare/dataset.pt``: x/t of the train and test split plus task metadata."""
    from pbrf.data import load_dataset  # lazy: imports scikit-learn / torchvision

    ds = load_dataset(ctx.cfg.data)
    ctx.save_checkpoint(
        "dataset",
        {"x_train": ds.x_train, "t_train": ds.t_train, "x_test": ds.x_test, "t_test": ds.t_test},
        meta={
            "name": ds.name,
            "task": ds.task,
            "default_loss": ds.default_loss,
            "output_dim": ds.output_dim,
            "n_train": ds.n_train,
            "n_test": int(ds.x_test.shape[0]),
        },
    )
