"""The command line: ``fastbp`` / ``python -m fastbp`` with its demo and bench commands."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastbp.__main__ import main

# One tiny config, one thread, one repeat, two implementations: a few seconds at most.
TINY_BENCH = ["bench", "--quick", "--configs", "tiny", "--threads", "1", "--repeats", "1",
              "--implementations", "fastbp", "numpy"]


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for text in ("demo", "bench", "bench --quick", "(the default)"):
        assert text in out


def test_bench_help_lists_the_runner_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in ("--quick", "--threads", "--configs", "--repeats", "--implementations",
                   "--kernels", "--out"):
        assert option in out
    assert "--raw-json" not in out  # internal, for the runner's child processes


def test_demo_runs(capsys):
    assert main(["demo", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy: fastbp" in out and "training time: fastbp" in out
    assert "BLAS:" in out


def test_bench_quick_prints_what_it_ran_and_the_table(tmp_path, capsys):
    pytest.importorskip("threadpoolctl")
    assert main([*TINY_BENCH, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "This is the quick run (--quick)" in out
    assert "tiny (64-32-10, batch 32, 2048 rows)" in out
    assert "Threads: 1; 1 timed repeats" in out
    assert "threads: 1" in out and "BLAS: " in out  # thread settings and BLAS kernels
    assert "| config | threads | roofline | fastbp |" in out
    assert "| tiny | 1 | " in out and "Prediction" not in out  # training only
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["settings"]["quick"] is True
    assert {r["suite"] for r in report["runs"][0]["results"]} == {"train"}


@pytest.mark.parametrize("argv, message", [
    (["bogus"], "invalid choice: 'bogus'"),
    (["demo", "--epochs", "0"], "--epochs: must be >= 1"),
    (["demo", "--epochs", "many"], "--epochs: invalid int value: 'many'"),
    (["demo", "--unknown"], "unrecognized arguments: --unknown"),
    (["bench", "--threads", "0"], "--threads must be >= 1"),
    (["bench", "--repeats", "0"], "--repeats must be >= 1"),
    (["bench", "--configs", "huge"], "argument --configs: invalid choice: 'huge'"),
    (["bench", "--implementations", "keras"], "invalid choice: 'keras'"),
    (["bench", "--raw-json"], "expected one argument"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_bad_arguments_exit_with_status_2_and_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and message in err


def run_installed(args, cwd):
    """Run the installed command line in a fresh interpreter, away from the checkout."""
    return subprocess.run([sys.executable, "-m", "fastbp", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": ""})


def test_python_dash_m_fastbp(tmp_path):
    result = run_installed(["--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m fastbp" in result.stdout and "bench" in result.stdout
    result = run_installed(["bench", "--threads", "0"], tmp_path)
    assert result.returncode == 2 and "--threads must be >= 1" in result.stderr


def test_bench_runs_from_the_installed_package(tmp_path):
    """fastbp.benchmarks ships with the package: bench works from any directory, and its
    results go to --out (by default benchmarks/results under the current directory)."""
    pytest.importorskip("threadpoolctl")
    result = run_installed(TINY_BENCH, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "| config | threads | roofline | fastbp |" in result.stdout
    assert "| tiny | 1 | " in result.stdout
    assert (tmp_path / "benchmarks" / "results" / "results.md").exists()


def test_console_script(tmp_path):
    script = Path(sys.executable).with_name("fastbp")
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable}")
    result = subprocess.run([str(script), "--help"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "usage: fastbp" in result.stdout



def test_version_prints_the_package_version(capsys):
    import fastbp
    from fastbp.__main__ import program_name

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"{program_name()} {fastbp.__version__}\n"
    result = run_installed(["--version"], Path.cwd().parent)
    assert result.returncode == 0 and result.stdout == f"python -m fastbp {fastbp.__version__}\n"


def test_the_full_benchmark_s_duration_is_one_figure_everywhere(capsys):
    """The command line's help, the quick run's note and the README quote the same
    (approximate) durations, those of fastbp.benchmarks.run, which agree with the 898 s
    the README's tables took."""
    import re

    from fastbp.benchmarks import run

    one, both = run.FULL_RUN_MINUTES, run.FULL_RUN_BOTH_KERNELS_MINUTES
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"the full benchmark (about {one} minutes)" in help_text
    assert f"--kernels both and again with OpenBLAS's own kernels (about {both} minutes)" in help_text
    note = run.settings_from(run.build_parser().parse_args(["--quick"])).describe()
    assert f"about {one} minutes, {both} with --kernels both" in " ".join(note.split())
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert {int(m) for m in re.findall(r"about (\d+) min", readme)} == {one, both}
    assert "20 minutes" not in help_text and "14 min" not in readme
    seconds = int(re.search(r"--kernels both` \((\d+) s\)", readme).group(1))
    assert round(seconds / 60) == both
