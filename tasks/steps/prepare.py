"""Step ``prepare``: the split, standardized data set as one tensor checkpoint."""

from __future__ import annotations

from tasks.engine.context import StepContext


def prepare(ctx: StepContext) -> None:
    """Write ``prepare/dataset.pt``: x/t of the train, validation and test splits plus task
    metadata (and the vocabulary of a text set). With ``mislabel`` set, ``t_train`` holds the
    corrupted labels, ``t_train_clean`` the original ones and ``corrupted`` the (N,) mask of
    corrupted rows (``meta["corrupted"]``: their count)."""
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
    corrupted = None
    if ctx.cfg.mislabel is not None:  # Figure 6: corrupt training labels, never test labels
        from pbrf.data.corrupt import corrupt_labels

        ml = ctx.cfg.mislabel
        num_classes = ds.output_dim if ds.task == "multiclass" else 2
        t_noisy, mask = corrupt_labels(ds.t_train, num_classes, ml.fraction, ml.seed)
        tensors.update(t_train=t_noisy, t_train_clean=ds.t_train, corrupted=mask)
        corrupted = int(mask.sum())
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
            **({"corrupted": corrupted} if corrupted is not None else {}),
        },
    )
