"""Saving and loading under faults: a full disk, a read-only folder, file permissions, and
every corruption of a file's bytes (tests/test_io.py has the round trips and hand-made
tampering; this file adds the faults and the exhaustive corruptions)."""
import ctypes
import errno
import json
import os
import pickle
import subprocess
import re
import sys
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import fastbp as fb
from fastbp import io


def trained_model(sizes=(6, 9, 4), seed=3):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(90, sizes[0])), rng.integers(0, sizes[-1], size=90)
    model = fb.mlp(list(sizes), activation="tanh", loss="cross_entropy", seed=seed)
    model.fit(X, y, epochs=2, batch_size=16, threads=1, optimizer=fb.SGD(lr=0.05, momentum=0.9))
    return model


def assert_same_model(loaded, model):
    assert io.model_config(loaded) == io.model_config(model)
    np.testing.assert_array_equal(loaded.parameters, model.parameters)
    np.testing.assert_array_equal(loaded._plan.state, model._plan.state)


# ------------------------------------------------------------------ full disk, read-only folder

# Saves a new model to argv's path in a fresh process, under an optional file-size limit, and
# prints what happened as JSON. Run with cwd outside the checkout, so that `import fastbp`
# finds the installed package, not the uncompiled sources.
_SAVE_CHILD = r"""
import json, os, resource, signal, sys
import fastbp as fb
args = json.loads(sys.argv[1])
model = fb.mlp([64, 128, 10], loss="cross_entropy", seed=1)  # ~38 KB of parameters
if args["file_size_limit"] is not None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills us at the limit
    limit = args["file_size_limit"]
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
result = {"writable": os.access(os.path.dirname(args["path"]), os.W_OK)}
try:
    model.save(args["path"])
except OSError as error:
    result.update(error=type(error).__name__, errno=error.errno, message=str(error))
else:
    result.update(error=None)
print(json.dumps(result))
"""


def _without_root_file_access():
    """In the child, before exec: drop root's power to ignore file permissions (the
    bounding set caps what a root process gets at exec), so a read-only folder is one."""
    libc = ctypes.CDLL(None, use_errno=True)
    PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def save_in_child(path, cwd, file_size_limit=None, drop_root_access=False):
    args = json.dumps({"path": str(path), "file_size_limit": file_size_limit})
    done = subprocess.run([sys.executable, "-c", _SAVE_CHILD, args], cwd=cwd, text=True,
                          capture_output=True, timeout=120,
                          preexec_fn=_without_root_file_access if drop_root_access else None)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE")
@pytest.mark.parametrize("limit", [0, 300, 4096, 20000],  # bytes; the file is about 40 KB
                         ids=["nothing fits", "in the config", "in the parameters' header",
                              "mid-parameters"])
def test_save_on_a_full_disk_fails_cleanly_and_keeps_the_old_file(tmp_path, limit):
    folder = tmp_path / "models"
    folder.mkdir()
    path = folder / "m.npz"
    old = trained_model()
    old.save(path)
    before = path.read_bytes()
    result = save_in_child(path, cwd=tmp_path, file_size_limit=limit)
    assert result["error"] is not None, "the save should have hit the file-size limit"
    assert result["errno"] in (errno.EFBIG, errno.ENOSPC), result
    assert path.read_bytes() == before
    assert os.listdir(folder) == ["m.npz"]  # no temporary file left behind
    assert_same_model(fb.load(path), old)


# Saves a ~2 MB model to argv's path over and over, printing a line after each save, until
# it is killed.
_SAVE_FOREVER_CHILD = r"""
import sys
import fastbp as fb
model = fb.mlp([512, 1024, 10], loss="cross_entropy", seed=2)
while True:
    model.save(sys.argv[1])
    print("saved", flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_save_killed_mid_write_leaves_a_loadable_file(tmp_path):
    """SIGKILL (no cleanup runs) at several points of repeated saves: the file at the path
    is always one whole model, the old or the new; only temporary files may be left."""
    path = tmp_path / "m.npz"
    old = trained_model()
    old.save(path)
    new = fb.mlp([512, 1024, 10], loss="cross_entropy", seed=2)

    def start_saving():
        return subprocess.Popen([sys.executable, "-c", _SAVE_FOREVER_CHILD, str(path)],
                                cwd=tmp_path, stdout=subprocess.PIPE, text=True)

    child = start_saving()
    try:
        assert child.stdout.readline() == "saved\n"  # imported, one save done
    finally:
        child.kill()
        child.wait()
    assert_same_model(fb.load(path), new)
    for delay in (0.0, 0.003, 0.011, 0.029, 0.047):
        old.save(path)
        child = start_saving()
        try:
            deadline = time.monotonic() + 60
            while not any(name.endswith(".tmp") for name in os.listdir(tmp_path)):
                assert child.poll() is None, "the child died before saving"
                assert time.monotonic() < deadline, "no temporary file: is save atomic?"
            time.sleep(delay)  # from the first temporary file: somewhere inside a save
        finally:
            child.kill()
            child.wait()
        loaded = fb.load(path)
        assert_same_model(loaded, old if loaded.n_features == old.n_features else new)
        assert {name for name in os.listdir(tmp_path) if not name.endswith(".tmp")} == {"m.npz"}


@pytest.mark.skipif(sys.platform != "linux", reason="drops root's file access through prctl")
@pytest.mark.parametrize("name", ["m.npz", "new.npz"], ids=["overwrite", "new file"])
def test_save_into_a_read_only_folder_fails_cleanly(tmp_path, name):
    folder = tmp_path / "models"
    folder.mkdir()
    old_path = folder / "m.npz"
    old = trained_model()
    old.save(old_path)
    before = old_path.read_bytes()
    folder.chmod(0o555)
    try:
        result = save_in_child(folder / name, cwd=tmp_path,
                               drop_root_access=os.geteuid() == 0)
    finally:
        folder.chmod(0o755)
    if result["writable"]:
        pytest.skip("the read-only folder is writable to this user (root with file access)")
    assert result["error"] == "PermissionError", result
    assert old_path.read_bytes() == before
    assert os.listdir(folder) == ["m.npz"]
    assert_same_model(fb.load(old_path), old)


# ------------------------------------------------------------------ permissions

@pytest.fixture
def umask():
    """Set the process umask for one test (restored after)."""
    previous = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(previous)


PERMISSIONS = [  # umask, mode of the file replaced (None: a new file), the saved file's mode
    (0o022, None, 0o644),    # a new file: what any program's new file gets (0666 & ~umask)
    (0o077, None, 0o600),
    (0o002, None, 0o664),
    (0o022, 0o640, 0o640),   # replacing a file keeps its permissions, as writing into it would
    (0o077, 0o644, 0o644),
]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("mask,existing_mode,expected", PERMISSIONS, ids=[
    f"umask {mask:03o}, " + ("new file" if mode is None else f"replacing {mode:03o}")
    for mask, mode, _ in PERMISSIONS])
def test_saved_file_gets_the_permissions_a_plain_write_gives(tmp_path, umask, mask,
                                                             existing_mode, expected):
    path = tmp_path / "m.npz"
    if existing_mode is not None:
        fb.mlp([3, 2], seed=0).save(path)
        path.chmod(existing_mode)
    umask(mask)
    fb.mlp([3, 2], seed=1).save(path)
    assert oct(path.stat().st_mode & 0o777) == oct(expected)


# ------------------------------------------------------------------ corrupted files

@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    """A small trained model and the bytes of its file (about 2 KB)."""
    model = trained_model(sizes=(3, 4, 2))
    path = tmp_path_factory.mktemp("small") / "m.npz"
    model.save(path)
    return model, path.read_bytes()


def load_or_refuse(path, model):
    """Load ``path``: either a ValueError saying the file is invalid, or exactly ``model``
    (a byte nothing reads, such as a timestamp); returns which."""
    try:
        loaded = fb.load(path)
    except ValueError as error:
        assert re.search("not a (valid )?fastbp model file", str(error))
        return "refused"
    assert_same_model(loaded, model)
    return "loaded"


@pytest.mark.parametrize("flip", [0xFF, 0x01], ids=["all bits", "lowest bit"])
def test_every_corrupted_byte_is_refused_or_harmless(tmp_path, small_file, flip):
    """Each byte of the file in turn, corrupted: load raises ValueError or, where nothing
    reads that byte, returns the saved model exactly; never another error or other numbers
    (the zip's CRC-32 covers every array's bytes)."""
    model, good = small_file
    path = tmp_path / "m.npz"
    outcomes = {"refused": 0, "loaded": 0}
    for offset in range(len(good)):
        corrupted = bytearray(good)
        corrupted[offset] ^= flip
        path.write_bytes(bytes(corrupted))
        try:
            outcomes[load_or_refuse(path, model)] += 1
        except BaseException as error:
            raise AssertionError(f"byte {offset} ^ {flip:#x}: {error!r}") from error
    assert outcomes["refused"] > 0.8 * len(good), outcomes


def test_every_truncation_is_refused(tmp_path, small_file):
    model, good = small_file
    path = tmp_path / "m.npz"
    for length in range(len(good)):
        path.write_bytes(good[:length])
        with pytest.raises(ValueError, match="not a (valid )?fastbp model file"):
            fb.load(path)


def rewrite_member(path, name, payload, compress_type=zipfile.ZIP_STORED):
    """Replace the member ``name``.npy of the archive at ``path`` with raw ``payload``."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    members[name + ".npy"] = payload
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data, compress_type=compress_type)


def npy_bytes(array):
    import io as bytes_io
    buffer = bytes_io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def huge_header(shape):
    """A .npy member that claims a float32 array of ``shape`` but holds 8 bytes of data."""
    import io as bytes_io
    buffer = bytes_io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + bytes(8)


FORGED = {
    "claims 4 TiB of parameters": lambda p: rewrite_member(p, "parameters", huge_header((2**40,))),
    "claims 4 EiB of state": lambda p: rewrite_member(p, "optimizer_state",
                                                      huge_header((2**60,))),
    "claims 4 GiB in 2-D": lambda p: rewrite_member(p, "parameters", huge_header((2**16, 2**14))),
    "compressed bomb": lambda p: rewrite_member(
        p, "parameters", npy_bytes(np.zeros(2**26, np.float32)), zipfile.ZIP_DEFLATED),
    "compressed, else valid": lambda p: rewrite_member(
        p, "config", zipfile.ZipFile(p).read("config.npy"), zipfile.ZIP_DEFLATED),
}


@pytest.mark.parametrize("how", list(FORGED))
def test_forged_sizes_are_refused(tmp_path, small_file, how):
    """Array headers that claim more than memory holds, and compressed members (fastbp never
    writes one; 256 MiB of zeros deflate to 250 KB), raise ValueError, and the bomb is
    refused before it is inflated (NumPy reports its allocations to tracemalloc)."""
    _, good = small_file
    path = tmp_path / "m.npz"
    path.write_bytes(good)
    FORGED[how](path)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="not a valid fastbp model file"):
            fb.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if how.startswith("compressed"):
        assert peak < 16 * 2**20, f"load allocated {peak / 2**20:.0f} MiB before refusing"


# ------------------------------------------------------------------ pickled payloads

class Payload:
    """Unpickling this creates the file ``marker``: the proof that a load ran pickle."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


PICKLES = {
    "pickle file": lambda p, obj: p.write_bytes(pickle.dumps(obj)),
    "npy of objects": lambda p, obj: p.write_bytes(npy_bytes(np.array([obj], dtype=object))),
    "objects as config": lambda p, obj: rewrite_member(
        p, "config", npy_bytes(np.array(obj, dtype=object))),
    "objects as parameters": lambda p, obj: rewrite_member(
        p, "parameters", npy_bytes(np.array([obj, 1.0], dtype=object))),
    "objects as optimizer state": lambda p, obj: rewrite_member(
        p, "optimizer_state", npy_bytes(np.array([obj], dtype=object))),
}


@pytest.mark.parametrize("how", list(PICKLES))
def test_pickled_objects_are_refused_unopened(tmp_path, small_file, how):
    _, good = small_file
    path, marker = tmp_path / "m.npz", tmp_path / "pickle-ran"
    path.write_bytes(good)
    PICKLES[how](path, Payload(marker))
    with pytest.raises(ValueError, match="not a (valid )?fastbp model file"):
        fb.load(path)
    assert not marker.exists(), "load unpickled the payload"
