"""What every rank of a data-parallel fit must agree on, checked together.

Every function here is collective: each rank of ``comm`` must call it at the same point,
and every rank returns, or every rank raises. That is what keeps a fit from hanging when
one rank fails: a rank that raised still takes part in the next collective call, with its
error instead of its data, and the others raise too (:class:`DistributedError`).
"""
import hashlib
import json

import numpy as np

from .callbacks import Callback, CSVLogger, ModelCheckpoint


class DistributedError(RuntimeError):
    """Raised on every rank of a data-parallel fit when a rank failed or the ranks disagree
    (different models, different feature counts, a rank without rows...). The message
    names each failing rank and its error; the failing rank's own exception is chained."""


def raise_together(comm, error):
    """Collective: if any rank passes an exception, every rank raises DistributedError
    naming every failing rank's error (chained from its own on a failing rank)."""
    message = None if error is None else f"{type(error).__name__}: {error}"
    by_message = {}
    for rank, text in enumerate(comm.allgather(message)):
        if text is not None:
            by_message.setdefault(text, []).append(str(rank))
    if not by_message:
        return
    size = comm.Get_size()
    summary = "; ".join(f"rank{'s' if len(ranks) > 1 else ''} {', '.join(ranks)} of {size} "
                        f"raised {text}" for text, ranks in by_message.items())
    raise DistributedError(f"{summary} (every rank stops)") from error


def run_together(comm, function, *args):
    """Collective: ``function(*args)`` on this rank; its result, unless any rank raised
    (then every rank raises, see raise_together)."""
    result, error = None, None
    try:
        result = function(*args)
    except Exception as caught:  # noqa: BLE001 - any failure must reach the other ranks
        error = caught
    raise_together(comm, error)
    return result


def model_checksum(model):
    """A digest of everything the ranks must share before training: the architecture and
    settings, the parameters, the optimizer state and counters, the BatchNorm statistics,
    the dropout seed and the generator's state (it draws the epochs' row order)."""
    plan = model._plan
    digest = hashlib.sha256()
    digest.update(repr(model).encode())
    digest.update(json.dumps(model._rng.bit_generator.state, sort_keys=True,
                             default=str).encode())
    digest.update(np.array([plan.dropout_seed, plan.training_steps, plan.steps, plan.epochs],
                           dtype=np.uint64).tobytes())
    for array in (plan.params, plan.state, plan.stats):
        digest.update(_fingerprint(array))
    return digest.hexdigest()


def _fingerprint(array, block_words=64):
    """Bytes that change with any change of one value of ``array`` (and with values moved
    between blocks of 64 words): the wrapping 64-bit sum of its 8-byte words, the sum of its
    blocks' sums weighted by position, and the bytes past the last whole block. NumPy
    streams it at memory speed: hashing the large network's 67 MB took 87 ms a fit call (a
    quarter of a 2-rank step when fit runs one epoch), this takes 9."""
    data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    words = data[:data.size // 8 * 8].view(np.uint64)
    whole = words.size // block_words * block_words
    blocks = words[:whole].reshape(-1, block_words).sum(axis=1, dtype=np.uint64)
    positions = np.arange(1, blocks.size + 1, dtype=np.uint64)
    sums = np.array([words.sum(dtype=np.uint64), (blocks * positions).sum(dtype=np.uint64)],
                    dtype=np.uint64)
    return sums.tobytes() + data[whole * 8:].tobytes()


def check_shards(comm, model, n_rows, extras):
    """Collective: the ranks hold the same model (model_checksum) and compatible shards;
    returns the shard offsets (rank r holds global rows offsets[r]:offsets[r+1]).

    ``extras`` is a dict of settings that must be given on all ranks or none (e.g.
    sample_weight, validation_data): True where this rank has it."""
    mine = {"checksum": model_checksum(model), "rows": n_rows,
            "features": model.n_features, "extras": extras}
    everyone = comm.allgather(mine)
    problems = []
    for rank, theirs in enumerate(everyone):
        if theirs["rows"] == 0:
            problems.append(f"rank {rank}'s X holds no rows (every rank needs at least one)")
        if theirs["checksum"] != everyone[0]["checksum"]:
            problems.append(
                f"rank {rank}'s model differs from rank 0's (parameter checksum): build it "
                "with the same seed on every rank, or load one saved file on every rank")
    for name in extras:
        given = [rank for rank, theirs in enumerate(everyone) if theirs["extras"][name]]
        if 0 < len(given) < len(everyone):
            problems.append(f"{name} is given on ranks {given} only; give it on every rank "
                            "or none")
    if problems:
        raise DistributedError("; ".join(dict.fromkeys(problems)))
    return np.concatenate([[0], np.cumsum([theirs["rows"] for theirs in everyone])])


class TogetherCallbacks(Callback):
    """The user's callbacks, run on every rank with the same logs; a callback that raises
    on any rank makes every rank raise, and ``model.stop_training`` set on any rank stops
    every rank. Files are written by rank 0 only: ModelCheckpoint and CSVLogger do not
    run on the other ranks (their models are identical)."""

    def __init__(self, comm, callbacks):
        self.comm = comm
        writes = (ModelCheckpoint, CSVLogger)
        self.callbacks = [callback for callback in callbacks
                          if comm.Get_rank() == 0 or not isinstance(callback, writes)]

    def _each(self, hook, *args):
        return run_together(self.comm, lambda: [getattr(callback, hook)(*args)
                                                for callback in self.callbacks])

    def set_model(self, model):
        self.model = model
        self._each("set_model", model)

    def on_train_begin(self, logs):
        self._each("on_train_begin", logs)

    def on_epoch_end(self, epoch, logs):
        self._each("on_epoch_end", epoch, logs)
        from mpi4py import MPI
        self.model.stop_training = self.comm.allreduce(bool(self.model.stop_training),
                                                       op=MPI.LOR)

    def on_divergence(self, error):
        return any(self._each("on_divergence", error))

    def on_train_end(self, logs):
        self._each("on_train_end", logs)
