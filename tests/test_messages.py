"""Messages that teach: the mistakes a new user makes get an error (or warning) that says
what to do instead, naming the argument. Each test checks the message's key words."""
import pickle

import numpy as np
import pytest

import fastbp as fb
from fastbp.progress import Progress, check_verbose

X = np.random.default_rng(0).normal(size=(30, 4))
LABELS = np.arange(30) % 3


def test_class_labels_with_the_default_mse_loss_suggest_cross_entropy():
    model = fb.mlp([4, 5, 3], seed=0)  # loss defaults to "mse"
    with pytest.raises(ValueError) as raised:
        model.fit(X, LABELS, epochs=1)
    message = str(raised.value)
    for words in ("y has 1 columns, but the model has 3 outputs", "default is 'mse'",
                  "integer class labels", "loss='cross_entropy'"):
        assert words in message
    with pytest.raises(ValueError) as raised:  # real-valued targets: no talk of classes
        model.fit(X, X[:, 0] + 0.5, epochs=1)
    assert "cross_entropy" not in str(raised.value)


def test_a_column_of_labels_is_read_as_labels_with_a_warning():
    model, twin = (fb.mlp([4, 5, 3], loss="cross_entropy", seed=0) for _ in range(2))
    with pytest.warns(UserWarning, match=r"y has shape \(30, 1\).*y\.ravel\(\)"):
        history = model.fit(X, LABELS[:, None], epochs=2, batch_size=8)
    expected = twin.fit(X, LABELS, epochs=2, batch_size=8)
    assert history.loss == expected.loss
    with pytest.warns(UserWarning, match=r"validation_data\[1\] has shape \(30, 1\)"):
        model.fit(X, LABELS, epochs=1, validation_data=(X, LABELS[:, None]))
    with pytest.warns(UserWarning, match="ravel"):
        assert model.evaluate(X, LABELS[:, None]) == model.evaluate(X, LABELS)


def test_softmax_activation_points_to_the_fused_loss():
    for make in (lambda: fb.Dense(8, 3, activation="softmax"),
                 lambda: fb.mlp([4, 3], output_activation="softmax")):
        with pytest.raises(ValueError) as raised:
            make()
        for words in ("activation='softmax'", "fused into the loss", "activation=None",
                      "loss='cross_entropy'"):
            assert words in str(raised.value)


@pytest.mark.parametrize("seed, error", [(1.5, TypeError), ("0", TypeError), (True, TypeError),
                                         (-1, ValueError), ([1, -2], ValueError)])
def test_a_bad_seed_is_named(seed, error):
    with pytest.raises(error, match=r"^seed must be None, an int >= 0"):
        fb.Sequential([fb.Dense(4, 3)], seed=seed)
    with pytest.raises(error, match=r"^seed must be"):
        fb.mlp([4, 3], seed=seed)


@pytest.mark.parametrize("seed", [None, 0, np.int64(7), [1, 2], np.random.SeedSequence(3)])
def test_good_seeds_still_work(seed):
    fb.Sequential([fb.Dense(4, 3)], seed=seed)


def test_a_single_layer_instead_of_a_list_is_named():
    with pytest.raises(TypeError) as raised:
        fb.Sequential(fb.Dense(8, 3))
    message = str(raised.value)
    assert "layers must be a list" in message and "single Dense" in message
    assert "Sequential([Dense(8, 3" in message
    with pytest.raises(TypeError, match="layers must be a list of fastbp layers, got int"):
        fb.Sequential(5)


def test_saving_into_a_missing_folder_names_the_path_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = fb.mlp([3, 2], seed=0)
    with pytest.raises(FileNotFoundError) as raised:
        model.save("missing_dir/m.npz")
    message = str(raised.value)
    assert "'missing_dir/m.npz'" in message
    assert repr(str(tmp_path / "missing_dir")) in message and "does not exist" in message
    assert ".tmp" not in message and ".fastbp-" not in message
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match=r"'file/m.npz'.*is a file, not a folder"):
        model.save("file/m.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing left behind


@pytest.mark.parametrize("write, why", [
    (lambda p: np.save(p, np.ones(3)), r"single NumPy array \(\.npy"),
    (lambda p: p.write_bytes(b"not a model at all"), r"not a \.npz archive.*b'not a mo'"),
    (lambda p: p.write_bytes(b""), "the file is empty"),
    (lambda p: p.write_bytes(pickle.dumps(fb.mlp([3, 2], seed=0))), "Python pickle"),
], ids=["npy", "garbage", "empty", "pickle"])
def test_loading_a_foreign_file_says_it_is_not_a_fastbp_model_file(tmp_path, write, why):
    path = tmp_path / "thing.npy"
    write(path)
    with pytest.raises(ValueError, match=f"is not a fastbp model file: .*{why}") as raised:
        fb.load(path)
    assert "allow_pickle" not in str(raised.value)
    assert "context manager" not in str(raised.value)


@pytest.mark.parametrize("verbose, expected", [(0, 0), (1, 1), (2, 2), (True, 1), (False, 0),
                                               (np.int64(2), 2)])
def test_verbose_levels(verbose, expected):
    assert check_verbose(verbose) == expected


@pytest.mark.parametrize("verbose, error", [(-1, ValueError), (3, ValueError),
                                            ("yes", TypeError), (1.0, TypeError),
                                            (None, TypeError)])
def test_bad_verbose_is_refused_before_training(verbose, error):
    model = fb.mlp([4, 5, 3], loss="cross_entropy", seed=0)
    before = model.parameters.copy()
    with pytest.raises(error, match=r"verbose must be 0, 1 or 2 .*2 one line per epoch"):
        model.fit(X, LABELS, epochs=1, verbose=verbose)
    np.testing.assert_array_equal(model.parameters, before)


class Terminal:
    """A stream that says it is a terminal, where verbose=1 would draw a tqdm bar."""

    def __init__(self):
        self.text = []

    def isatty(self):
        return True

    def write(self, text):
        self.text.append(text)

    def flush(self):
        pass


def test_verbose_2_prints_one_line_per_epoch_even_on_a_terminal(capsys):
    assert Progress(2, stream=Terminal())._tqdm is None
    model = fb.mlp([4, 5, 3], loss="cross_entropy", seed=0)
    model.fit(X, LABELS, epochs=3, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["epoch", "1/3"], ["epoch", "2/3"],
                                                    ["epoch", "3/3"]]
    assert all("loss" in line and "accuracy" in line for line in lines)
    model.fit(X, LABELS, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""
