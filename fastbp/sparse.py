"""Sparse input: scipy.sparse rows handed to the core as CSR, never densified.

The core's first Dense layer reads a sparse batch's rows where they are (src_c/_op_sparse.pxd):
forward sums the rows of W that each row's entries name, and dW = Xᵀ·δ touches only those
rows. :func:`check_sparse_X` turns any scipy.sparse matrix or array (CSR, CSC, COO, ...) into
:class:`SparseRows`, the layout the core checks and reads: int64 row pointers, int32 column
indices and values in the model's dtype.
"""
import numpy as np

_INT32_MAX = np.iinfo(np.int32).max


def is_sparse(X):
    """Whether X is a scipy.sparse matrix or array (or already :class:`SparseRows`), without
    importing scipy.sparse for dense input."""
    if isinstance(X, SparseRows):
        return True
    try:
        from scipy.sparse import issparse
    except ImportError:  # pragma: no cover - scipy is a dependency
        return False
    return issparse(X)


class SparseRows:
    """Rows of a sparse input in the core's CSR layout (read-only by convention).

    ``indptr`` (intp, n_rows + 1), ``indices`` (int32 columns) and ``data`` (the model's
    dtype) as scipy's CSR, and ``shape``. Duplicate entries add up and columns need not be
    sorted, as in scipy's products."""

    __slots__ = ("indptr", "indices", "data", "shape")

    def __init__(self, indptr, indices, data, shape):
        self.indptr, self.indices, self.data, self.shape = indptr, indices, data, shape

    @property
    def nnz(self):
        return int(self.indptr[-1])

    def take(self, rows):
        """The given rows (an index array or a boolean mask), in that order."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        indptr = np.zeros(len(rows) + 1, dtype=np.intp)
        np.cumsum(lengths, out=indptr[1:])
        # each kept entry's position in the source arrays
        source = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return SparseRows(indptr, self.indices[source], self.data[source],
                          (len(rows), self.shape[1]))

    def __getitem__(self, rows):
        return self.take(rows)

    def toarray(self):
        """The dense array (for tests and small inputs)."""
        from scipy.sparse import csr_matrix
        return csr_matrix((self.data, self.indices, self.indptr), shape=self.shape).toarray()


def check_sparse_X(X, dtype, name="X"):
    """A 2-D X (any scipy.sparse format; its shape checked by fastbp.data.check_X) as finite
    :class:`SparseRows` of ``dtype``, or an error naming ``name``: a copy only where the
    format, index or value types differ."""
    if isinstance(X, SparseRows):  # checked already, but perhaps for another dtype
        return SparseRows(X.indptr, X.indices, X.data.astype(dtype, copy=False), X.shape)
    n_features = X.shape[1]
    if X.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got {X.dtype} dtype")
    if n_features > _INT32_MAX:
        raise ValueError(f"{name} has {n_features} features; sparse input takes at most "
                         f"{_INT32_MAX}")
    csr = X.tocsr()
    csr.check_format(full_check=False)  # array lengths agree with the shape
    data = np.ascontiguousarray(csr.data, dtype=dtype)
    if not np.isfinite(data).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return SparseRows(np.ascontiguousarray(csr.indptr, dtype=np.intp),
                      np.ascontiguousarray(csr.indices, dtype=np.int32), data,
                      (int(csr.shape[0]), int(csr.shape[1])))
