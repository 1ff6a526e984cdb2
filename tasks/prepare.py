"""Step ``prepare``: the split, standardized data set as one tensor checkpoint."""

from __future__ import annotations

from tasks.context import StepContext


def prepare(ctx: StepContext) -> None:
    """Write ``prepare/dataset.pt``: x/t of the train, validation and test splits plus task
    metadata (and the vocabulary of a text set)."""
    from pbrf.data import load_dataset  # lazy: imports scikit-learn / torchvision

    ds = load_dataset(ctx.cfg.data)
    tensors = {
        "x_train": ds.x_train,
        "t_train": ds.t_train,
        "x_val": ds.x_val,
        "t_val": ds.t_val,
        "x_test": ds.x_test,
        "t_test": ds.t_test,
    }
    ctx.save_checkpoint(
        "dataset",
        tensors,
        meta={
            "name": ds.name,
            "task": ds.task,
            "default_loss": ds.default_loss,
            "output_dim": ds.output_dim,
            "n_train": ds.n_train,
            "n_val": ds.n_val,
            "n_test": ds.n_test,
            "vocabulary": list(ds.vocabulary) if ds.vocabulary is not None else None,
        },
    )
