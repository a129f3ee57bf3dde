"""Datasets for demos, examples and tests: generated in code, or read from local files.

Nothing here downloads anything. :func:`make_classification` generates a problem in code;
:func:`load_idx` reads one file in the IDX format (the format of MNIST and Fashion-MNIST),
and :func:`load_mnist` reads the four standard MNIST files from a folder you already have.

The IDX format
    A 4-byte magic number, ``00 00 TT DD``: two zero bytes, a type code ``TT`` (below) and
    the number of dimensions ``DD``; then ``DD`` sizes, each a 4-byte big-endian unsigned
    integer; then the values in C (row-major) order, each big-endian. Type codes:

    ====  ===============================  ==================
    code  values                           returned dtype
    ====  ===============================  ==================
    0x08  unsigned byte                    uint8
    0x09  signed byte                      int8
    0x0B  16-bit signed integer            int16
    0x0C  32-bit signed integer            int32
    0x0D  32-bit IEEE float                float32
    0x0E  64-bit IEEE float                float64
    ====  ===============================  ==================

    Files are often distributed gzipped (``train-images-idx3-ubyte.gz``); :func:`load_idx`
    recognises gzip by its first two bytes (``1f 8b``), whatever the file is called.
"""
import gzip
import math
import os
import struct
import zlib

import numpy as np

from .data import check_positive_int

#: IDX type code -> the dtype of the stored values (big-endian where it matters).
IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 22  # read in 4 MiB pieces: a header that lies about its sizes costs no memory


def make_classification(n_samples=4096, n_features=32, n_classes=10, noise=2.0, seed=0):
    """A nonlinear multi-class problem: Gaussian clusters pushed through a random tanh map.

    Each class has two cluster centres, so the classes are not linearly separable; a
    hidden layer is needed to reach high accuracy. The features are standardised (zero
    mean, unit variance per column).

    Parameters
    ----------
    n_samples : int, default 4096
        Number of rows.
    n_features : int, default 32
        Number of columns.
    n_classes : int, default 10
        Number of classes; labels are ``0 .. n_classes - 1``.
    noise : float, default 2.0
        Standard deviation of the Gaussian noise around each cluster centre (the centres
        have standard deviation 2): larger is harder.
    seed : int or None, default 0
        Seed of NumPy's ``default_rng``; the same seed gives the same data.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float32
    y : ndarray of shape (n_samples,), int64 labels in [0, n_classes)

    Examples
    --------
    >>> from fastbp.datasets import make_classification
    >>> X, y = make_classification(n_samples=100, n_features=8, n_classes=3)
    >>> X.shape, X.dtype, y.shape, sorted(set(y.tolist()))
    ((100, 8), dtype('float32'), (100,), [0, 1, 2])
    """
    n_samples = check_positive_int(n_samples, "n_samples")
    n_features = check_positive_int(n_features, "n_features")
    n_classes = check_positive_int(n_classes, "n_classes")
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(2 * n_classes, n_features))
    cluster = rng.integers(0, 2 * n_classes, size=n_samples)
    latent = centres[cluster] + noise * rng.normal(size=(n_samples, n_features))
    mixing = rng.normal(scale=1.0 / np.sqrt(n_features), size=(n_features, n_features))
    X = np.tanh(latent @ mixing) + 0.1 * latent
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X.astype(np.float32), (cluster % n_classes).astype(np.int64)


# ---------------------------------------------------------------------------------- IDX

def load_idx(path):
    """Read one IDX file (MNIST's format), gzipped or not, into a NumPy array.

    The header is checked before any data is trusted: the two zero bytes, a known type
    code, at least one dimension, and a file length that matches the sizes exactly.
    Whether the file is gzipped is decided from its first bytes, not from its name.

    Parameters
    ----------
    path : str or os.PathLike
        The file, e.g. ``"train-images-idx3-ubyte.gz"`` or ``"t10k-labels-idx1-ubyte"``.

    Returns
    -------
    ndarray
        Of the shape the header gives (e.g. ``(60000, 28, 28)`` for MNIST's training images,
        ``(60000,)`` for its labels) and the dtype its type code gives (uint8, int8, int16,
        int32, float32 or float64; see the module docstring), in native byte order,
        C-contiguous and writable.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        Naming the file, if it is not IDX (non-zero first bytes, unknown type code, no
        dimensions), if the header or the data is truncated, if bytes follow the data, or
        if it looks gzipped but the gzip stream is corrupt or cut short.

    See Also
    --------
    load_mnist : the four MNIST files of a folder, ready for ``model.fit``.

    Examples
    --------
    A gzipped vector of three unsigned bytes: magic ``00 00 08 01`` (type 0x08, one
    dimension), the size 3 as a 4-byte big-endian integer, then the values:

    >>> import gzip, os, tempfile
    >>> from fastbp.datasets import load_idx
    >>> path = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte.gz")
    >>> with gzip.open(path, "wb") as file:
    ...     _ = file.write(bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 2, 1]))
    >>> load_idx(path)
    array([7, 2, 1], dtype=uint8)
    """
    name = os.fspath(path)
    with open(name, "rb") as raw:
        gzipped = raw.read(len(_GZIP_MAGIC)) == _GZIP_MAGIC
        raw.seek(0)
        if not gzipped:
            return _read_idx(raw, name, raw_size=os.fstat(raw.fileno()).st_size)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read_idx(stream, name + " (gunzipped)")
        except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError
            raise ValueError(f"{name}: starts like a gzip file but its gzip stream is "
                             f"corrupt or cut short ({error})") from None


def _read_idx(stream, name, raw_size=None):
    """Parse an IDX stream; ``name`` goes into every error message. ``raw_size``, when the
    stream is a plain file, lets a wrong size be reported before reading the data."""
    magic = _read_up_to(stream, 4)
    if len(magic) < 4:
        raise ValueError(f"{name}: not an IDX file: {len(magic)} bytes, shorter than the "
                         "4-byte IDX magic number")
    if magic[0] != 0 or magic[1] != 0:
        raise ValueError(f"{name}: not an IDX file: it starts with bytes {magic[:2].hex(' ')}, "
                         "an IDX file with 00 00")
    code, n_dims = magic[2], magic[3]
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02X} ({t.name})" for c, t in IDX_TYPES.items())
        raise ValueError(f"{name}: unknown IDX type code 0x{code:02X}; known codes: {known}")
    if n_dims == 0:
        raise ValueError(f"{name}: the IDX header gives 0 dimensions; at least 1 is needed")
    size_bytes = _read_up_to(stream, 4 * n_dims)
    if len(size_bytes) < 4 * n_dims:
        raise ValueError(f"{name}: truncated IDX header: {n_dims} dimensions need "
                         f"{4 * n_dims} bytes of sizes, the file has {len(size_bytes)}")
    shape = struct.unpack(f">{n_dims}I", size_bytes)
    dtype = IDX_TYPES[code]
    header = 4 + 4 * n_dims
    expected = math.prod(shape) * dtype.itemsize
    what = f"shape {shape} of {dtype.name} needs {expected} bytes after the {header}-byte header"
    if raw_size is not None and raw_size - header != expected:
        _size_error(name, what, raw_size - header, expected)
    data = _read_up_to(stream, expected)
    if len(data) < expected:
        _size_error(name, what, len(data), expected)
    extra = _count_rest(stream)
    if extra:
        _size_error(name, what, expected + extra, expected)
    native = dtype.newbyteorder("=")
    return np.frombuffer(data, dtype=dtype).astype(native).reshape(shape)


def _size_error(name, what, found, expected):
    if found < expected:
        raise ValueError(f"{name}: truncated IDX data: {what}, the file has {found}")
    extra = found - expected
    plural = "s" if extra > 1 else ""
    raise ValueError(f"{name}: {extra} unexpected byte{plural} after the IDX data ({what}, "
                     f"the file has {found})")


def _read_up_to(stream, n):
    """At most ``n`` bytes from ``stream`` (fewer only at its end), read in chunks."""
    parts = []
    while n > 0:
        part = stream.read(min(n, _CHUNK))
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def _count_rest(stream):
    count = 0
    while True:
        part = stream.read(_CHUNK)
        if not part:
            return count
        count += len(part)


#: The four files of MNIST (and of Fashion-MNIST, which uses the same names).
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _find_mnist_file(folder, stem):
    # As distributed: "train-images-idx3-ubyte[.gz]"; some copies use "train-images.idx3-ubyte".
    dotted = stem.replace("-idx", ".idx")
    candidates = [stem, stem + ".gz", dotted, dotted + ".gz"]
    for candidate in candidates:
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"no {stem} in {folder} (looked for {', '.join(candidates)})")


def load_mnist(folder):
    """MNIST (or Fashion-MNIST) from the four standard IDX files in ``folder``.

    Looks for ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each plain or with ``.gz``
    (also spelt ``train-images.idx3-ubyte``). Nothing is downloaded: get the files yourself.
    Each file is read with :func:`load_idx`.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder holding the four files.

    Returns
    -------
    X_train : ndarray of shape (n_train, n_pixels), float32
        Training images, one flattened image per row (``n_pixels = 784`` for 28×28),
        scaled from bytes 0..255 to [0, 1].
    y_train : ndarray of shape (n_train,), int64
        Training labels.
    X_test : ndarray of shape (n_test, n_pixels), float32
    y_test : ndarray of shape (n_test,), int64

    Raises
    ------
    FileNotFoundError
        If one of the four files is missing (naming the names tried).
    ValueError
        If a file is not valid IDX (see :func:`load_idx`), the images are not 3-D
        unsigned bytes, the labels not 1-D unsigned bytes, or their counts differ.

    Examples
    --------
    With the files in ``~/data/mnist``::

        import fastbp as fb
        from fastbp.datasets import load_mnist

        X_train, y_train, X_test, y_test = load_mnist("~/data/mnist")
        model = fb.mlp([784, 128, 10], activation="relu", loss="cross_entropy")
        model.fit(X_train, y_train, epochs=10, batch_size=64, optimizer=fb.Adam(lr=1e-3))
        print(model.evaluate(X_test, y_test))
    """
    folder = os.path.expanduser(os.fspath(folder))
    paths = [_find_mnist_file(folder, stem) for stem in MNIST_FILES]
    arrays = [load_idx(path) for path in paths]
    result = []
    for (images, labels), (image_path, label_path) in zip(
            (arrays[0:2], arrays[2:4]), (paths[0:2], paths[2:4])):
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"{image_path}: expected 3-D unsigned bytes (images), got "
                             f"shape {images.shape} of {images.dtype}")
        if labels.ndim != 1 or labels.dtype != np.uint8:
            raise ValueError(f"{label_path}: expected 1-D unsigned bytes (labels), got "
                             f"shape {labels.shape} of {labels.dtype}")
        if len(images) != len(labels):
            raise ValueError(f"{image_path} has {len(images)} images but {label_path} has "
                             f"{len(labels)} labels")
        X = images.reshape(len(images), -1).astype(np.float32)
        X /= 255.0
        result += [X, labels.astype(np.int64)]
    return tuple(result)
