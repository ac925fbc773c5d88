"""knnlab predict: images, arrays, CSV; the unusual-input flag; clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from knnlab import KNNClassifier, cli
from knnlab.model_io import save_model
from knnlab.stages.train import novelty_threshold, value_range


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    X, y = load_digits(return_X_y=True)
    model = KNNClassifier(5).fit(X, y)
    path = tmp_path_factory.mktemp("model") / "model.npz"
    extra = {
        "image_shape": [8, 8],
        "value_range": value_range(X),
        "novelty_threshold": novelty_threshold(model),
    }
    save_model(path, model, extra=extra)
    return path, X


def drawn_one() -> np.ndarray:
    """The cookbook's hand-drawn 1 on an 8x8 grid, values 0..16."""
    one = np.zeros((8, 8))
    one[1:-1, 4] = 16
    one[2, 3] = 16
    return one


def predict_json(capsys, *argv) -> list[dict]:
    assert cli.main(["predict", "--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_drawn_one_as_npy_is_a_one(digits_model, tmp_path, capsys):
    path, _ = digits_model
    np.save(tmp_path / "one.npy", drawn_one())
    [result] = predict_json(capsys, "--model", str(path), str(tmp_path / "one.npy"))
    assert result["label"] == 1
    assert next(iter(result["probabilities"])) == "1"


def test_dark_on_light_photo_sized_png_is_converted(digits_model, tmp_path, capsys):
    path, _ = digits_model
    big = np.kron(drawn_one(), np.ones((6, 6)))  # 48x48
    ink_on_paper = (255 - big / 16 * 255).astype(np.uint8)  # black ink, white paper
    Image.fromarray(ink_on_paper).save(tmp_path / "one.png")
    [result] = predict_json(capsys, "--model", str(path), str(tmp_path / "one.png"))
    assert result["label"] == 1


def test_training_rows_are_usual_and_noise_is_unusual(digits_model, tmp_path, capsys):
    path, X = digits_model
    rows = np.vstack([X[:3], np.random.default_rng(0).uniform(0, 16, (2, 64))])
    np.savetxt(tmp_path / "rows.csv", rows, delimiter=",")
    results = predict_json(capsys, "--model", str(path), str(tmp_path / "rows.csv"))
    assert [r["unusual"] for r in results] == [False, False, False, True, True]


def test_csv_from_stdin(digits_model, monkeypatch, capsys):
    path, X = digits_model
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(",".join(map(str, X[0])) + "\n"))
    assert cli.main(["predict", "--model", str(path), "-"]) == 0
    assert capsys.readouterr().out.startswith("<stdin>:1: 0")


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"not an image at all", "bad.png", "cannot be read as an image"),
        (b"1,2,3\n", "short.csv", "inputs have 3 features but the model expects 64"),
        (b"x", "notes.docx", "unsupported input"),
    ],
)
def test_bad_inputs_get_one_clear_line(digits_model, tmp_path, capsys, content, name, message):
    path, _ = digits_model
    (tmp_path / name).write_bytes(content)
    assert cli.main(["predict", "--model", str(path), str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
