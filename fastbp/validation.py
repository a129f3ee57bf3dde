"""Holding out a validation set: fit(..., validation_split=f)."""
import numpy as np


def split_validation(X, Y, labels, weights, fraction, rng, stratify):
    """Split checked training arrays into (X, Y, labels, weights) for training and (X, Y,
    labels) for validation, holding out ``fraction`` of the rows drawn with ``rng``.

    With ``stratify`` (class labels), each class gives round(fraction · its count) rows, so
    class proportions match in both parts; rows keep their original order within each part.
    """
    n = X.shape[0]
    if stratify:
        held = []
        for label in np.unique(labels):
            rows = np.flatnonzero(labels == label)
            take = int(round(fraction * rows.size))
            held.append(rng.permutation(rows)[:take])
        held = np.concatenate(held)
    else:
        held = rng.permutation(n)[:int(round(fraction * n))]
    mask = np.zeros(n, dtype=bool)
    mask[held] = True
    n_held = int(mask.sum())
    if n_held == 0 or n_held == n:
        raise ValueError(f"validation_split={fraction} of {n} samples leaves "
                         f"{n - n_held} for training and {n_held} for validation; "
                         "both need at least one")

    def part(keep):
        return (X[keep], Y[keep] if Y.shape[0] else Y,
                labels[keep] if labels.shape[0] else labels)

    return (*part(~mask), None if weights is None else weights[~mask], part(mask))
