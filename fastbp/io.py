"""Saving and loading models: a documented ``.npz`` file that never needs pickle.

Format (version 4), an uncompressed NumPy ``.npz`` archive holding exactly four arrays:

``config``
    A 0-d unicode array: JSON with ``format`` ("fastbp.Sequential"), ``version`` (4),
    ``layers`` (in order; each ``{"type": "dense", "in_features", "out_features",
    "activation", "init", "bias_init"}``, ``{"type": "dropout", "rate"}``,
    ``{"type": "activation", "activation"}``, ``{"type": "batchnorm", "num_features",
    "momentum", "eps", "affine"}``, ``{"type": "layernorm", "num_features", "eps",
    "elementwise_affine"}`` or ``{"type": "residual", "layers": [...]}``), ``loss``,
    ``dtype``, ``threads``, ``optimizer`` (``null``, or its ``type`` and settings, the
    schedule included with its state), ``steps`` and ``epochs`` (updates and fit epochs since
    the optimizer state was created), ``training_steps`` (training batches over the model's
    life, which number its dropout masks), ``dropout_seed`` (an integer in [0, 2**64) if a
    layer drops out, else ``null``) and ``rng`` (the state of the model's NumPy generator,
    so shuffling resumes where it stopped).
``parameters``
    The flat parameter buffer (all Dense weights row-major in layer order, then every
    Dense bias and norm ``γ``, ``β`` in layer order).
``optimizer_state``
    The flat optimizer state: the optimizer's state slots back to back, each as long as
    the parameters (e.g. SGD velocity; Adam's first then second moments).
``statistics``
    BatchNorm's running statistics: per BatchNorm layer in order, its running mean then
    its running variance (empty without BatchNorm).

Older files still load: version 3 (Dense and Dropout layers only, no ``statistics``),
version 2 (no dropout; layers without ``type`` are dense, and
those written before ``init`` and ``bias_init`` existed read as "auto" and "zeros") and
version 1 (SGD only, no step counts). A version 1 or 2 file cannot hold a Dropout layer,
``training_steps`` or ``dropout_seed``; one that does is refused.

Files are written atomically (a temporary file in the same folder, then ``os.replace``) so
an existing file is never left half-written; the file gets the permissions a plain write
would give it (those of the file it replaces, else 0666 less the umask). Everything is
checked on load: a truncated, tampered or foreign file raises ``ValueError``, and so does a
compressed member (fastbp never writes one), so a small file cannot inflate to gigabytes.
"""
import json
import os
import secrets
import zipfile

import numpy as np

from .data import check_finite
from .layers import Activation, Dense, Dropout, Residual
from .normalization import BatchNorm, LayerNorm
from .optimizers import optimizer_from_config

FORMAT = "fastbp.Sequential"
VERSION = 4
_ARRAYS = ("config", "parameters", "optimizer_state", "statistics")
_ARRAYS_BEFORE_4 = _ARRAYS[:3]


def model_config(model):
    """The JSON-able description of ``model`` (everything but its arrays)."""
    optimizer = model.optimizer
    return {
        "format": FORMAT,
        "version": VERSION,
        "layers": [_layer_config(layer) for layer in model._specs],
        "loss": model.loss,
        "dtype": model.dtype.name,
        "threads": model.threads,
        "optimizer": None if optimizer is None else optimizer.to_config(),
        "steps": model._plan.steps,
        "epochs": model._plan.epochs,
        "training_steps": model._plan.training_steps,
        "dropout_seed": model._plan.dropout_seed if model._plan.has_dropout else None,
        "rng": model._rng.bit_generator.state,
    }


def _layer_config(spec):
    if isinstance(spec, Dropout):
        return {"type": "dropout", "rate": spec.rate}
    if isinstance(spec, Activation):
        return {"type": "activation", "activation": spec.activation}
    if isinstance(spec, BatchNorm):
        return {"type": "batchnorm", "num_features": spec.num_features,
                "momentum": spec.momentum, "eps": spec.eps, "affine": spec.affine}
    if isinstance(spec, LayerNorm):
        return {"type": "layernorm", "num_features": spec.num_features, "eps": spec.eps,
                "elementwise_affine": spec.elementwise_affine}
    if isinstance(spec, Residual):
        return {"type": "residual", "layers": [_layer_config(layer) for layer in spec.layers]}
    return {"type": "dense", "in_features": spec.in_features,
            "out_features": spec.out_features, "activation": spec.activation,
            "init": spec.init, "bias_init": spec.bias_init}


def save(model, path):
    """Write ``model`` to ``path`` (see the module docstring for the format), atomically.

    The optimizer the model last trained with is saved with its state: after
    :func:`load`, ``fit`` without an ``optimizer`` argument continues exactly.
    """
    if not (hasattr(model, "_plan") and hasattr(model, "_specs")):  # not importing model
        raise TypeError(f"model must be a fastbp.Sequential, got {type(model).__name__}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    # Not tempfile.mkstemp, whose files are 0600 whatever the umask: 0666 less the umask,
    # as for any new file (O_EXCL: never someone else's file), or the replaced file's mode.
    temporary = os.path.join(folder, f".fastbp-{secrets.token_hex(8)}.tmp")
    try:
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:  # name the user's path, not the temporary file's
        raise _save_error(error, path, folder) from None
    try:
        with os.fdopen(handle, "wb") as file:
            try:
                os.chmod(temporary, os.stat(path).st_mode & 0o777)
            except FileNotFoundError:
                pass
            np.savez(file, config=np.array(json.dumps(model_config(model))),
                     parameters=model.parameters, optimizer_state=model._plan.state,
                     statistics=model._plan.stats)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _save_error(error, path, folder):
    """``error`` (from creating the temporary file beside ``path``) retold about ``path``."""
    if isinstance(error, FileNotFoundError):
        return FileNotFoundError(error.errno, f"cannot save the model to {path!r}: the folder "
                                 f"{folder!r} does not exist (create it first, e.g. "
                                 "os.makedirs(folder, exist_ok=True))")
    if isinstance(error, NotADirectoryError):
        return NotADirectoryError(error.errno, f"cannot save the model to {path!r}: a part of "
                                  f"{folder!r} is a file, not a folder")
    if isinstance(error, PermissionError):
        return PermissionError(error.errno, f"cannot save the model to {path!r}: no permission "
                               f"to create files in the folder {folder!r} (fastbp writes a "
                               "temporary file there, then renames it)")
    return error


#: The first bytes of a zip archive (what ``np.savez`` writes) and of a ``.npy`` file.
_ZIP_MAGIC, _NPY_MAGIC = b"PK\x03\x04", b"\x93NUMPY"


def _not_a_model_file(path):
    """Why ``path`` cannot be a fastbp model file, judged by its first bytes (None if it
    may be one: a zip archive, as ``model.save`` writes)."""
    with open(path, "rb") as file:
        head = file.read(64)
    if head.startswith(_ZIP_MAGIC):
        return None
    if not head:
        return "the file is empty"
    if head.startswith(_NPY_MAGIC):
        return ("it is a single NumPy array (.npy, as numpy.save writes); a fastbp model is an "
                ".npz archive written by model.save(path)")
    if head[:1] == b"\x80":
        return ("it holds a Python pickle, which fastbp never writes or reads (load a pickled "
                "model with pickle.load, only from a source you trust)")
    return (f"it is not a .npz archive as model.save(path) writes (a zip file, starting with "
            f"{_ZIP_MAGIC!r}); it starts with {head[:8]!r}")


def load(path, build):
    """Read a model written by :func:`save`, rebuilt by ``build`` (``fastbp.Sequential``,
    which ``fastbp.load`` passes: this module never imports the model); resumes training
    exactly where it stopped.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npz`` file written by ``model.save(path)``.
    build : class
        The model class, called as ``build(layers, loss=..., dtype=..., seed=0,
        threads=...)``.

    Returns
    -------
    Sequential
        The model: its architecture, parameters, optimizer settings and state (moments,
        step count) and generator state, as saved; ``fit`` continues the same run.

    Raises
    ------
    FileNotFoundError, PermissionError, IsADirectoryError
        As ``open`` raises them.
    ValueError
        "not a fastbp model file" and why, if it is not a ``.npz`` archive (a ``.npy``
        array, a pickle, anything else); "not a valid fastbp model file" and what is wrong,
        if it is truncated, tampered with, from another program or a newer format.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> import fastbp as fb
    >>> model = fb.mlp([3, 4, 2], activation="tanh", loss="mse", seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
    >>> model.save(path)
    >>> again = fb.load(path)   # fastbp.io.load(path, fb.Sequential)
    >>> np.array_equal(again.parameters, model.parameters), again.layers[0]
    (True, Dense(3, 4, activation='tanh'))
    """
    path = os.fspath(path)
    why = _not_a_model_file(path)  # FileNotFoundError and the like as open raises them
    if why is not None:
        raise ValueError(f"{path} is not a fastbp model file: {why}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = _ARRAYS if "statistics" in archive.files else _ARRAYS_BEFORE_4
            if sorted(archive.files) != sorted(names):
                raise ValueError(f"it holds {sorted(archive.files)}, not {list(names)}")
            packed = [info.filename for info in archive.zip.infolist()
                      if info.compress_type != zipfile.ZIP_STORED]
            if packed:
                raise ValueError(f"{packed} are compressed; fastbp stores arrays uncompressed")
            arrays = {name: archive[name] for name in names}
        config = json.loads(str(arrays.pop("config")[()]))
        return from_parts(build, config, **arrays)
    # MemoryError: a header claiming an array larger than memory; NotImplementedError and
    # RuntimeError: zipfile on corrupted flags (an unknown version, "encrypted").
    except (ValueError, KeyError, TypeError, IndexError, EOFError, OSError, MemoryError,
            NotImplementedError, RuntimeError, zipfile.BadZipFile,
            json.JSONDecodeError) as error:
        if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise ValueError(f"{path} is not a valid fastbp model file: {error}") from None


def _count(value, key):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a count >= 0, got {value!r}")
    return value


#: Version 4's layer kinds beyond Dense and Dropout, and the keys each holds.
_SETTINGS = {"activation": (Activation, ("activation",)),
             "batchnorm": (BatchNorm, ("num_features", "momentum", "eps", "affine")),
             "layernorm": (LayerNorm, ("num_features", "eps", "elementwise_affine"))}


def _layer(spec, version):
    if not isinstance(spec, dict):
        raise ValueError(f"layer {spec!r} is not a JSON object")
    kind = spec.get("type", "dense") if version >= 3 else "dense"
    if version < 3 and "type" in spec:
        raise ValueError(f"a version {version} file has no layer types, got {spec!r}")
    if kind == "dropout":
        if set(spec) != {"type", "rate"}:
            raise ValueError(f"a dropout layer holds type and rate only, got {spec!r}")
        return Dropout(spec["rate"])
    if version >= 4 and kind == "residual":
        if set(spec) != {"type", "layers"} or not isinstance(spec["layers"], list):
            raise ValueError(f"a residual block holds type and a list of layers, got {spec!r}")
        return Residual([_layer(layer, version) for layer in spec["layers"]])
    if version >= 4 and kind in _SETTINGS:
        cls, keys = _SETTINGS[kind]
        if set(spec) != {"type", *keys}:
            raise ValueError(f"a {kind} layer holds type and {', '.join(keys)}, got {spec!r}")
        return cls(*(spec[key] for key in keys))
    if kind != "dense":
        raise ValueError(f"unknown layer type {kind!r}")
    # init and bias_init are optional: files written before they existed mean the defaults.
    return Dense(spec["in_features"], spec["out_features"], spec["activation"],
                 spec.get("init", "auto"), spec.get("bias_init", "zeros"))


def _dropout_seed(value, model):
    if not model._plan.has_dropout:
        if value is not None:
            raise ValueError(f"dropout_seed is {value!r} but no layer drops out")
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2 ** 64:
        raise ValueError(f"dropout_seed must be an integer in [0, 2**64), got {value!r}")
    return value


def from_parts(build, config, parameters, optimizer_state, statistics=None):
    """Rebuild a model with ``build`` (see :func:`load`) from its config dict and arrays,
    checking that they agree."""
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError("its config is not a fastbp.Sequential description")
    version = config.get("version")
    if isinstance(version, bool) or version not in (1, 2, 3, VERSION):
        raise ValueError(f"format version {version!r}; this fastbp reads versions 1 to "
                         f"{VERSION}")
    if version < 3 and ("training_steps" in config or "dropout_seed" in config):
        raise ValueError(f"a version {version} file has no training_steps or dropout_seed")
    if (statistics is None) != (version < 4):
        raise ValueError(f"a version {version} file "
                         + ("has no statistics array" if version < 4 else "needs a statistics array"))
    if not isinstance(config["layers"], list):
        raise ValueError("its layers are not a list")
    layers = [_layer(spec, version) for spec in config["layers"]]
    model = build(layers, loss=config["loss"], dtype=config["dtype"], seed=0,
                  threads=config["threads"])
    plan = model._plan
    if statistics is not None:
        if statistics.dtype != plan.dtype or statistics.shape != plan.stats.shape:
            raise ValueError(f"statistics have dtype {statistics.dtype} and shape "
                             f"{statistics.shape}, the architecture needs {plan.dtype} "
                             f"{plan.stats.shape}")
        check_finite(statistics, "statistics")
        plan.stats[...] = statistics
    if parameters.dtype != plan.dtype or parameters.shape != (plan.n_params,):
        raise ValueError(f"parameters have dtype {parameters.dtype} and shape "
                         f"{parameters.shape}, the architecture needs {plan.dtype} "
                         f"({plan.n_params},)")
    check_finite(parameters, "parameters")
    model.parameters[...] = parameters
    if config["optimizer"] is not None:
        model._use_optimizer(optimizer_from_config(config["optimizer"]))
    expected = 0 if model.optimizer is None else model.optimizer.state_slots() * plan.n_params
    if optimizer_state.dtype != plan.dtype or optimizer_state.shape != (expected,):
        raise ValueError(f"optimizer state has dtype {optimizer_state.dtype} and shape "
                         f"{optimizer_state.shape}, expected {plan.dtype} ({expected},)")
    check_finite(optimizer_state, "optimizer state")
    plan.state[...] = optimizer_state
    plan.steps, plan.epochs, plan.training_steps = (
        _count(config.get(key, 0), key) for key in ("steps", "epochs", "training_steps"))
    plan.dropout_seed = _dropout_seed(config.get("dropout_seed"), model)
    model._rng.bit_generator.state = config["rng"]
    return model
