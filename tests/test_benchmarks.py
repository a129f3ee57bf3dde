"""Smoke tests of the benchmark runner (fastbp.benchmarks.run): it runs and writes its
reports. No timing assertions: speed is measured by the runner, never asserted in tests."""
import importlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("threadpoolctl")
from fastbp.benchmarks import configs, implementations, run, timing  # noqa: E402
from fastbp.benchmarks.report import markdown_table  # noqa: E402

SMOKE_ARGS = ["--quick", "--configs", "tiny", "--threads", "1", "--repeats", "1",
              "--implementations", "fastbp", "numpy"]


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    report = run.main([*SMOKE_ARGS, "--out", str(out)])
    return out, report


def test_writes_json_and_markdown(smoke_report):
    out, report = smoke_report
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(report))
    markdown = (out / "results.md").read_text()
    assert "| config | threads | roofline | fastbp | numpy |" in markdown
    assert re.search(r"\| tiny \| 1 \| [\d.]+ \| [\d.]+ \([\d.]+×\) \| [\d.]+ \([\d.]+×\) \|",
                     markdown)


def test_markdown_cells_are_ms_to_three_figures_with_the_paired_ratio():
    records = [dict(config=config, threads=threads, implementation=name, median_s=ms / 1e3,
                    median_ratio=ratio, baseline="roofline")
               for config, threads, name, ms, ratio in [
                   ("small", 2, "fastbp", 3312.4, 1.034), ("tiny", 1, "numpy", 12.44, 6.8),
                   ("tiny", 1, "fastbp", 2.544, 1.41), ("tiny", 1, "roofline", 0.7734, 1.0),
                   ("small", 2, "roofline", 3201.0, 1.0)]]
    assert markdown_table(records).splitlines() == [
        "| config | threads | roofline | fastbp | numpy |",
        "|---|---|---|---|---|",
        "| tiny | 1 | 0.773 | 2.54 (1.41×) | 12.4 (6.80×) |",
        "| small | 2 | 3201 | 3312 (1.03×) | – |"]


def test_training_records_have_positive_finite_times(smoke_report):
    _, report = smoke_report
    (only_run,) = report["runs"]
    training = {r["implementation"]: r for r in only_run["results"]
                if r["suite"] == "train" and r["config"] == "tiny" and r["threads"] == 1}
    assert set(training) == {"fastbp", "numpy", "roofline"}
    for record in training.values():
        assert len(record["times_s"]) == 1
        values = [*record["times_s"], record["median_s"], record["median_ratio"]]
        assert all(math.isfinite(v) and v > 0 for v in values)
    assert training["roofline"]["median_ratio"] == 1.0


def test_report_names_thread_pools_and_kernels(smoke_report):
    _, report = smoke_report
    (only_run,) = report["runs"]
    assert only_run["threads"]["1"]["pools"] and "label" in only_run["kernels"]
    assert list(report["settings"]["threads"]) == [1]


def test_paired_ratio_is_the_median_of_per_repeat_ratios():
    summary = timing.summarize({"roofline": [1.0, 10.0, 10.0], "x": [2.0, 11.0, 20.0]}, "roofline")
    assert summary["x"]["ratios"] == [2.0, 1.1, 2.0]
    assert summary["x"]["median_ratio"] == 2.0  # not median(x) / median(roofline) = 1.1
    assert summary["x"]["median_s"] == 11.0
    assert summary["roofline"]["median_ratio"] == 1.0


def test_round_robin_rotates_the_order():
    calls = []
    tasks = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = timing.time_round_robin(tasks, repeats=3)
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")
    assert all(len(values) == 3 for values in times.values())


@pytest.mark.parametrize("name", ["torch", "sklearn"])
def test_optional_adapters_train_and_predict(name):
    """The torch and scikit-learn adapters run an epoch and predict probabilities."""
    implementation = implementations.IMPLEMENTATIONS[name]
    if not implementation.available():
        pytest.skip(f"{name} is not installed")
    config = configs.Config("test", (8, 6, 3), 4, 16)
    adapter = implementation()
    adapter.prepare(configs.make_problem(config, "float32", config.n_samples))
    adapter.run_epoch()
    proba = adapter.predict(np.ones((5, 8), dtype=np.float32))
    assert proba.shape == (5, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_dropout_adapter_is_opt_in_and_trains_with_dropout():
    """fastbp-dropout: the benchmark network with Dropout(0.5) after each hidden layer, timed
    only when --implementations names it."""
    assert "fastbp-dropout" not in run.parse_args([]).implementations
    assert "fastbp-dropout" in run.parse_args(["--implementations", "fastbp-dropout"]).implementations
    config = configs.Config("test", (8, 6, 5, 3), 4, 16)
    adapter = implementations.IMPLEMENTATIONS["fastbp-dropout"]()
    adapter.prepare(configs.make_problem(config, "float32", config.n_samples))
    assert [type(layer).__name__ for layer in adapter.model.layers] == [
        "BoundDense", "Dropout", "BoundDense", "Dropout", "BoundDense"]
    adapter.run_epoch()
    assert adapter.model.training_steps == 4
    proba = adapter.predict(np.ones((5, 8), dtype=np.float32))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_small_gemm_benchmark_runs(capsys):
    """The measurement behind SMALL_GEMM_MACS runs and prints its table (timings themselves
    are not checked here)."""
    from fastbp.benchmarks import small_gemm

    small_gemm.main(["--dtype", "float64"])
    assert "| 32x64x32 |" in capsys.readouterr().out


def test_sklearn_sparse_benchmark_prints_each_row(capsys):
    """The sparse benchmark runs end to end on a small TF-IDF-like problem (timings not
    checked), and its data are what it says: L2-normalised positive rows, ~density."""
    pytest.importorskip("sklearn")
    from fastbp.benchmarks import sklearn_sparse

    X, y = sklearn_sparse.tfidf_like(300, n_features=2000, words_per_row=40, seed=1)
    assert X.format == "csr" and X.min() >= 0 and set(np.unique(y)) == set(range(10))
    np.testing.assert_allclose(np.sqrt(X.multiply(X).sum(axis=1)), 1.0, rtol=1e-12)
    assert 30 < X.nnz / 300 < 50
    np.testing.assert_array_equal(sklearn_sparse.densify(X[:5]),
                                  X[:5].toarray().astype(np.float32))
    sklearn_sparse.main(["--rows", "400", "--test-rows", "100", "--features", "3000",
                         "--density", "0.01", "--hidden", "16", "--epochs", "2",
                         "--repeats", "1"])
    out = capsys.readouterr().out
    for name in ("fastbp sparse +float32 +2 +1", "fastbp dense +float32 +1 +1",
                 "scikit-learn sparse +float64 +1 +1"):
        assert re.search(rf"{name} +[\d.]+ +[\d.]+x +[\d.]+ %", out), out
    assert "CPU:" in out and "BLAS thread" in out


def test_sklearn_digits_benchmark_prints_each_estimator_and_the_gemm_limit(monkeypatch,
                                                                           capsys):
    """One small config of the digits benchmark runs end to end (timings not checked)."""
    pytest.importorskip("sklearn")
    from fastbp.benchmarks import sklearn_digits

    monkeypatch.setattr(sklearn_digits, "CONFIGS", [
        ("adam, hidden (8,), 5 epochs", dict(solver="adam", hidden_layer_sizes=(8,),
                                              max_iter=5))])
    sklearn_digits.main(["--repeats", "1"])
    out = capsys.readouterr().out
    for name in ("scikit-learn", "fastbp float32", "fastbp float64"):
        assert re.search(rf"{name} +fit +[\d.]+ s .* n_iter_ +5 ", out)
    assert re.search(r"GEMMs only +fit +[\d.]+ s +\( *[\d.]+x\) +float32, scikit-learn's 5 "
                     r"epochs", out)


def test_step_costs_benchmark_prints_every_variant(capsys):
    from fastbp.benchmarks import step_costs

    step_costs.main(["--repeats", "1", "--rows", "256"])
    out = capsys.readouterr().out
    for name in ["roofline (GEMMs only)", *step_costs.VARIANTS]:
        assert re.search(rf"\| {re.escape(name)} \| [\d.]+ \| [\d.]+ \| -?[\d.]+ \|", out)


def test_scaling_table_gives_speed_up_and_efficiency_against_one_thread():
    from fastbp.benchmarks.report import scaling_table
    records = [dict(config="small", implementation=name, threads=n, median_s=seconds)
               for name, n, seconds in [("fastbp", 1, 0.100), ("fastbp", 2, 0.060),
                                        ("fastbp", 4, 0.040), ("roofline", 1, 0.080),
                                        ("roofline", 2, 0.050)]]
    assert scaling_table(records).splitlines() == [
        "| config | implementation | 1 thread | 2 threads | 4 threads |",
        "|---|---|---|---|---|",
        "| small | fastbp | 100 | 60.0 (1.67×, 83%) | 40.0 (2.50×, 62%) |",
        "| small | roofline | 80.0 | 50.0 (1.60×, 80%) | – |"]
    assert scaling_table([r for r in records if r["threads"] != 1]) == ""
    assert scaling_table([r for r in records if r["threads"] == 1]) == ""


def test_fit_threads_cell_reports_fit_and_predict_times(capsys):
    from fastbp.benchmarks import fit_threads
    fit_threads.main(["--cell", "tiny", "2"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["fit"] > 0 and result["predict"] > 0


def test_bandwidth_prints_the_step_floor(capsys):
    from fastbp.benchmarks import bandwidth
    bandwidth.main(["--sizes", "20", "16", "3"])
    out = capsys.readouterr().out
    assert "387 parameters; an SGD-momentum step moves 0.0 MB" in out  # 20·16+16+16·3+3
    assert re.search(r"floor: \d+ us per step", out)


BENCHMARK_MODULES = sorted(path.stem for path in
                           (Path(__file__).parent.parent / "benchmarks").glob("*.py")
                           if path.stem != "__init__")


@pytest.mark.parametrize("name", BENCHMARK_MODULES)
def test_every_benchmark_module_imports(name):
    """A benchmark that no test runs still imports: the runner's split left
    benchmarks/resnet.py importing names run.py no longer had."""
    try:
        importlib.import_module(f"fastbp.benchmarks.{name}")
    except (ImportError, SystemExit) as error:  # an optional peer (torch, jax, ...) missing
        if isinstance(error, ImportError) and (error.name or "").startswith("fastbp"):
            raise  # a name or module of fastbp's own that is not there
        pytest.skip(f"needs an optional package: {error}")
