"""The runner's report: Markdown tables (per suite, and the thread-scaling table), the
machine description and the files it writes."""
import json
import math
import os
import platform
from importlib import metadata
from pathlib import Path

from fastbp._native import VARIANT as CORE_VARIANT
from fastbp.benchmarks.chart import plot_ratios
from fastbp.benchmarks.configs import CONFIGS, SUITES
from fastbp.benchmarks.implementations import IMPLEMENTATION_ORDER

BUSY_CORES = 0.1  # other processes using more than this many cores get a warning



def sort_key(record):
    return (list(CONFIGS).index(record["config"]), record["threads"],
            IMPLEMENTATION_ORDER.index(record["implementation"]))


def markdown_table(records):
    """One row per config and thread count, one column per implementation (the baseline
    first): median ms, and for the others the median paired ratio to the baseline."""
    baseline = records[0]["baseline"]
    names = sorted({r["implementation"] for r in records},
                   key=lambda name: (name != baseline, IMPLEMENTATION_ORDER.index(name)))
    cells = {}
    for r in sorted(records, key=sort_key):
        cell = format_ms(r["median_s"] * 1e3)
        if r["implementation"] != baseline:
            cell += f" ({r['median_ratio']:.2f}×)"
        cells.setdefault((r["config"], r["threads"]), {})[r["implementation"]] = cell
    lines = ["| config | threads | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for (config, threads), row in cells.items():
        lines.append(f"| {config} | {threads} | "
                     + " | ".join(row.get(name, "–") for name in names) + " |")
    return "\n".join(lines)


def format_ms(ms):
    """Milliseconds to three significant figures, without exponents."""
    return f"{ms:.{max(0, 2 - math.floor(math.log10(ms)))}f}" if ms >= 1 else f"{ms:.3f}"


def busy_note(records):
    """A line naming the timings during which other processes kept the CPU busy, if any."""
    busy = {(r["config"], r["threads"], r.get("other_processes_cores")) for r in records
            if (r.get("other_processes_cores") or 0) > BUSY_CORES}
    if not busy:
        return []
    cells = ", ".join(f"{config} at {threads} thread(s): {cores:.2f}"
                      for config, threads, cores in sorted(busy))
    return ["", f"Other processes kept cores busy during these timings (mean cores): {cells}."]


def markdown_report(report):
    """The whole Markdown document: settings, then one table per kernel family and suite."""
    settings = report["settings"]
    machine = report["machine"]
    lines = ["# fastbp benchmarks", "",
             f"{machine['cpu']}, {machine['cpus']} CPUs; Python {machine['python']}; "
             + ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
             + f"; fastbp core build: {machine['fastbp_core']}",
             "",
             f"Median of {settings['repeats']} repeats after one warm-up, implementations "
             "interleaved round-robin; cells are median ms, and in brackets the median over "
             "repeats of (time / the baseline's time in the same repeat). Configs: "
             + "; ".join(f"{c} {CONFIGS[c].describe()}" for c in settings["configs"]) + "."]
    for run in report["runs"]:
        lines += ["", f"## OpenBLAS kernels: {run['kernels']['label']}"]
        for suite in SUITES:
            records = [r for r in run["results"] if r["suite"] == suite.name]
            if records:
                title = suite.title.format(predict_rows=settings["predict_rows"])
                lines += ["", f"### {title}", "", markdown_table(records), *busy_note(records)]
        scaling = scaling_table([r for r in run["results"] if r["suite"] == "train"])
        if scaling:
            lines += ["", "### Thread scaling, float32 training", "",
                      "Epoch time at each thread count; in brackets the speed-up over 1 thread "
                      "and the efficiency (speed-up / threads). fastbp runs a team of that many "
                      "threads (BLAS at one inside); roofline is the GEMMs through BLAS at that "
                      "many threads.", "", scaling]
    return "\n".join(lines) + "\n"


def scaling_table(records, names=("fastbp", "roofline")):
    """One row per config and implementation among ``names``, one column per thread count:
    median ms (speed-up over 1 thread, efficiency). Empty without a 1-thread row and
    another count."""
    threads = sorted({r["threads"] for r in records})
    if len(threads) < 2 or threads[0] != 1:
        return ""
    times = {(r["config"], r["implementation"], r["threads"]): r["median_s"] for r in records}
    lines = ["| config | implementation | " + " | ".join(f"{n} thread{'s' * (n > 1)}"
                                                     for n in threads) + " |",
             "|---|---|" + "---|" * len(threads)]
    for config in sorted({r["config"] for r in records}, key=list(CONFIGS).index):
        for name in names:
            one = times.get((config, name, 1))
            if one is None:
                continue
            cells = []
            for n in threads:
                seconds = times.get((config, name, n))
                cells.append("–" if seconds is None else format_ms(seconds * 1e3) + (
                    "" if n == 1 else f" ({one / seconds:.2f}×, {one / seconds / n:.0%})"))
            lines.append(f"| {config} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_info():
    """CPU, core count, Python and the versions of the libraries involved."""
    versions = {}
    for package in ("fastbp", "numpy", "scipy", "threadpoolctl", "torch", "scikit-learn", "jax"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": cpu_name(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions,
            "fastbp_core": CORE_VARIANT}


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_reports(report, out):
    """results.json, results.md (also printed) and, with matplotlib, results.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=1))
    markdown = markdown_report(report)
    (out / "results.md").write_text(markdown)
    print("\n" + markdown)
    if plot_ratios(report, out / "results.png"):
        print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'results.png'}")
    else:
        print(f"wrote {out / 'results.json'}, {out / 'results.md'} "
              "(no results.png: pip install matplotlib)")
