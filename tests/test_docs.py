"""Documentation that runs: the docstring examples of every module (doctest), and a numpydoc
docstring on every public name that ``fastbp`` exports."""
import doctest
import importlib
import inspect
import pkgutil

import pytest

import fastbp

# Modules whose examples need an optional package.
NEEDS = {"fastbp.sklearn": "sklearn", "fastbp.plotting": "matplotlib", "fastbp.onnx": "onnx",
         "fastbp.distributed": "mpi4py"}
MODULES = sorted(
    ["fastbp"] + [f"fastbp.{info.name}" for info in pkgutil.iter_modules(fastbp.__path__)
                  if not info.name.startswith("_") and info.name != "benchmarks"])


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):  # globals: a copy of the module's, as doctest does
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_the_modules_have_examples():
    """The doctest run above is not vacuous: these modules' examples are found and run."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    for name in ("fastbp.datasets", "fastbp.io", "fastbp.optimizers", "fastbp.layers", "fastbp.bound", "fastbp.normalization",
                 "fastbp.schedules", "fastbp.callbacks", "fastbp.gradcheck",
                 "fastbp.activations", "fastbp.losses"):
        module = importlib.import_module(name)
        assert sum(len(t.examples) for t in finder.find(module, name)) > 0, name


def numpydoc_sections(obj):
    doc = inspect.getdoc(obj) or ""
    return {line.strip() for line, underline in zip(doc.splitlines(), doc.splitlines()[1:])
            if underline.strip() and set(underline.strip()) == {"-"}
            and len(underline.strip()) == len(line.strip())}


@pytest.mark.parametrize("name", sorted(fastbp.__all__))
def test_every_export_has_a_numpydoc_docstring(name):
    obj = getattr(fastbp, name)
    doc = inspect.getdoc(obj)
    assert doc and len(doc.splitlines()) >= 3, f"fastbp.{name} needs more than a one-liner"
    if inspect.ismodule(obj):
        return  # module docstrings describe; their classes are checked below
    sections = numpydoc_sections(obj)
    if inspect.isclass(obj) and issubclass(obj, Exception):
        return
    if inspect.isclass(obj) and issubclass(obj, int):  # the IntEnum code twins
        assert "Attributes" in sections
        return
    takes_arguments = len(inspect.signature(obj).parameters) > 0
    if takes_arguments:
        assert "Parameters" in sections, f"fastbp.{name}: no Parameters section"
    if inspect.isfunction(obj):
        assert "Returns" in sections, f"fastbp.{name}: no Returns section"


@pytest.mark.parametrize("module", ["callbacks", "schedules"])
def test_public_classes_of_the_exported_modules_are_documented(module):
    mod = getattr(fastbp, module)
    for name in mod.__all__ if hasattr(mod, "__all__") else dir(mod):
        obj = getattr(mod, name)
        if inspect.isclass(obj) and obj.__module__ == mod.__name__ and not name.startswith("_"):
            doc = inspect.getdoc(obj) or ""
            assert len(doc.splitlines()) >= 3, f"fastbp.{module}.{name}"
