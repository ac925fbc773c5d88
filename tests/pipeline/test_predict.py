"""knnlab predict: images, arrays, CSV; the unusual-input flag; clear errors, also for
image decompression bombs and lying .npy headers (refused before decoding)."""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from knnlab import KNNClassifier, cli
from knnlab.conformal import calibrate
from knnlab.out_of_fold import out_of_fold
from knnlab.pipeline.analysis.training import distance_scale, novelty_threshold, value_range
from knnlab.pipeline.io.model_io import model_from, read_model, save_model

from ..support.format_samples import SAMPLES
from ..support.memory import peak_growth


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


@pytest.fixture(scope="module")
def split_model(tmp_path_factory):
    """Fitted on 1,400 digits, its unusual scale from the 397 others (as train does)."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train = X[:1400], X[1400:], y[:1400]
    model = KNNClassifier(5).fit(X_train, y_train)
    scale, threshold, false_alarms = distance_scale(model, X_test)
    path = tmp_path_factory.mktemp("split-model") / "model.npz"
    extra = {"image_shape": [8, 8], "value_range": value_range(X_train),
             "novelty_threshold": threshold, "test_distance_scale": scale,
             "false_alarm_rate": false_alarms}  # fmt: skip
    save_model(path, model, extra=extra)
    return path, model, X_test, false_alarms


@pytest.fixture(scope="module")
def calibrated_model(tmp_path_factory):
    """Fitted on 1,400 digits with its prediction sets calibrated on their out-of-fold votes
    at coverage 0.99, as train does; the 397 others to ask about."""
    X, y = load_digits(return_X_y=True)
    model = KNNClassifier(5).fit(X[:1400], y[:1400])
    votes = out_of_fold(KNNClassifier(5), X[:1400], y[:1400])
    threshold = calibrate(votes.proba, votes.y_code, 0.99)
    path = tmp_path_factory.mktemp("calibrated") / "model.npz"
    extra = {"image_shape": [8, 8], "value_range": value_range(X), "coverage": 0.99,
             "conformal_threshold": threshold}  # fmt: skip
    save_model(path, model, extra=extra)
    return path, model, threshold, X[1400:], y[1400:]


def test_predict_gives_each_rows_prediction_set(calibrated_model, tmp_path, capsys):
    path, model, threshold, X_test, y_test = calibrated_model
    np.savetxt(tmp_path / "test.csv", X_test, delimiter=",")
    results = predict_json(capsys, "--model", str(path), str(tmp_path / "test.csv"))
    proba = model.predict_proba(X_test)
    for result, row in zip(results, proba, strict=True):  # the definition, class by class
        expected = [
            int(c) for c, vote in zip(model.classes_, row, strict=True) if 1 - vote <= threshold
        ]
        assert result["prediction_set"] == expected, result
    covered = np.mean(
        [label in r["prediction_set"] for label, r in zip(y_test, results, strict=True)]
    )
    assert covered >= 0.97, covered  # 0.99 promised; the held-out digits are near it
    assert any(len(r["prediction_set"]) > 1 for r in results), "ambiguous rows get two classes"
    assert cli.main(["predict", "--model", str(path), str(tmp_path / "test.csv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    shown = "{" + ", ".join(str(c) for c in results[0]["prediction_set"]) + "}"
    assert f"  99 % set {shown}" in lines[0], lines[0]


def test_an_empty_set_says_why(calibrated_model, tmp_path, capsys):
    path, *_ = calibrated_model
    strict = tmp_path / "strict.npz"  # coverage 0.5: a set only where all neighbours agree
    header, arrays = read_model(path)
    save_model(strict, model_from(header, arrays), extra={**header["extra"], "coverage": 0.5,
               "conformal_threshold": 0.0})  # fmt: skip
    np.savetxt(
        tmp_path / "noise.csv", np.random.default_rng(3).uniform(0, 16, (20, 64)), delimiter=","
    )
    results = predict_json(capsys, "--model", str(strict), str(tmp_path / "noise.csv"))
    empty = [i for i, r in enumerate(results) if r["prediction_set"] == []]
    assert empty, "noise rarely gets five neighbours of one class"
    assert cli.main(["predict", "--model", str(strict), str(tmp_path / "noise.csv")]) == 0
    line = capsys.readouterr().out.splitlines()[empty[0]]
    assert "  50 % set {} (no class's vote is high enough)" in line, line


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


def test_unusual_says_how_unusual_on_the_test_splits_scale(split_model, tmp_path, capsys):
    path, model, X_test, false_alarms = split_model
    mean = model.kneighbors(X_test)[0].mean(axis=1)
    # The flag's false alarms, measured on the test split: the share of its rows flagged.
    np.savetxt(tmp_path / "test.csv", X_test, delimiter=",")
    results = predict_json(capsys, "--model", str(path), str(tmp_path / "test.csv"))
    assert np.mean([r["unusual"] for r in results]) == false_alarms
    assert false_alarms == 4 / 397, "the test rows' 99th percentile: 1 % of them beyond it"
    # Each row's percentile: the share of test rows lying closer to their neighbours
    # (a loop over the test rows), to the scale's 0.1 % steps and one row's share (its
    # percentiles interpolate between rows).
    for result, distance in zip(results[:40], mean[:40], strict=True):
        closer = 100 * np.mean(mean < distance)
        assert abs(result["distance_percentile"] - closer) <= 0.1 + 100 / len(mean), result
    noise = np.random.default_rng(0).uniform(0, 16, (1, 64))
    np.savetxt(tmp_path / "noise.csv", noise, delimiter=",")
    assert cli.main(["predict", "--model", str(path), str(tmp_path / "noise.csv")]) == 0
    line = capsys.readouterr().out
    assert line.rstrip().endswith(
        "UNUSUAL: farther from its neighbours than every test row (the flag marks "
        f"{100 * false_alarms:.1f} % of the test split itself)"
    ), line


def test_a_model_file_without_the_scale_keeps_the_old_flag(digits_model, tmp_path, capsys):
    path, _ = digits_model
    np.savetxt(tmp_path / "noise.csv", np.full((1, 64), 16.0), delimiter=",")
    assert cli.main(["predict", "--model", str(path), str(tmp_path / "noise.csv")]) == 0
    assert capsys.readouterr().out.rstrip().endswith("UNUSUAL: unlike the training data")


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


# --- oversized and crafted inputs: refused from their headers, before decoding -------------


def _constant_png(path, width: int, height: int, channels: int = 1) -> None:
    """A white PNG (grey, or RGB with 3 channels) written without building its raster.

    Pillow would need the whole image in memory to write one. Each row (a filter byte, then
    the pixels) is deflated once with a full flush, after which deflate starts afresh, so
    every row compresses to the same bytes: a 20000 x 20000 image is a file of about 1 MB.
    The zlib stream around them is a 2-byte header and the Adler-32 of all the rows.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = b"\0" + b"\xff" * (width * channels)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: no header, no checksum
    block = deflate.compress(row) + deflate.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(height):
        adler = zlib.adler32(row, adler)
    idat = b"\x78\xda" + block * height + deflate.flush() + struct.pack(">I", adler)
    color = {1: 0, 3: 2}[channels]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def image_bombs(tmp_path_factory):
    """Two small PNGs that decode to gigabytes, and what reading each did, measured in one
    fresh interpreter: 20000x20000 grey (Pillow itself refuses it on opening) and
    8000x8000 RGB (below Pillow's limit, above knnlab's)."""
    root = tmp_path_factory.mktemp("bombs")
    _constant_png(root / "small.png", 64, 48, 3)
    with Image.open(root / "small.png") as image:
        assert (np.asarray(image) == 255).all() and image.size == (64, 48), "a valid PNG"
    files = {"20000x20000": (root / "huge.png", 20000, 20000, 1)}
    files["8000x8000"] = (root / "large.png", 8000, 8000, 3)
    for path, width, height, channels in files.values():
        _constant_png(path, width, height, channels)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # here only: read the header
            with Image.open(path) as image:
                assert image.size == (width, height), "Pillow reads what was written"
    calls = [f"image_to_features(Path({str(f[0])!r}), (8, 8), (0.0, 16.0))" for f in files.values()]
    results = peak_growth(
        "from pathlib import Path\n"
        "from knnlab.pipeline.io.inputs import image_to_features\n"
        "import PIL.Image",
        calls,
    )
    return {name: (f[0], r) for (name, f), r in zip(files.items(), results, strict=True)}


@pytest.mark.parametrize("size", ["20000x20000", "8000x8000"])
def test_image_bombs_are_refused_before_decoding(digits_model, image_bombs, capsys, size):
    path, result = image_bombs[size]
    assert path.stat().st_size < 2 * 2**20, "a small file"
    assert result["error"].startswith("InputError"), result
    assert "at most 4096x4096 (16,777,216 pixels)" in result["error"], result
    assert result["growth_mib"] < 100 and result["seconds"] < 5, result
    assert cli.main(["predict", "--model", str(digits_model[0]), str(path)]) == 2
    err = capsys.readouterr().err
    assert "at most 4096x4096" in err and err.count("\n") == 1, err


def test_npy_is_sized_from_its_header(digits_model, tmp_path, capsys, monkeypatch):
    model = str(digits_model[0])
    liar = tmp_path / "liar.npy"
    np.save(liar, np.zeros((2, 64)))
    header = np.lib.format.header_data_from_array_1_0(np.zeros((2, 64)))
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {**header, "shape": (100_000, 100_000)})
    liar.write_bytes(buffer.getvalue() + liar.read_bytes()[len(buffer.getvalue()) :])
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    big = tmp_path / "big.npy"
    np.save(big, np.zeros((20, 64)))
    monkeypatch.setattr("knnlab.pipeline.io.inputs.MAX_NPY_BYTES", 8 * 64 * 10)
    cases = {
        liar: "declares shape (100000, 100000) of float64",
        pickled: "holds object values; give an array of numbers",
        big: "holds 1,280 values, 10,240 bytes as float64",
    }
    for path, message in cases.items():
        assert cli.main(["predict", "--model", model, str(path)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize("scale", ["none", "standard", "minmax"])
@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("p", [1, 2, 3, 1.5, float("inf")])
def test_the_saved_model_answers_as_the_estimator_does(tmp_path, scale, weights, p):
    """predict answers brute-force models from the file's arrays (no scikit-learn): the
    same neighbour distances and probabilities, bit for bit, as the loaded estimator."""
    from knnlab.pipeline.analysis.prediction import SavedModel
    from knnlab.pipeline.io.model_io import load_model, read_model

    X, y = load_digits(return_X_y=True)
    path = tmp_path / "model.npz"
    save_model(path, KNNClassifier(7, p=p, weights=weights, scale=scale).fit(X[:1200], y[:1200]))
    queries = X[1200:] + 0.25  # off the grid: no exact matches
    queries[:3] = X[:3]  # and some exact matches (distance-weighted votes of d = 0)
    estimator = load_model(path)
    distances, proba = SavedModel(*read_model(path)).neighbors_and_proba(queries)
    np.testing.assert_array_equal(distances, estimator.kneighbors(queries)[0])
    np.testing.assert_array_equal(proba, estimator.predict_proba(queries))


def test_a_tree_model_is_answered_by_the_estimator(tmp_path):
    from knnlab.pipeline.analysis.prediction import SavedModel
    from knnlab.pipeline.io.model_io import load_model, read_model

    X, y = load_digits(return_X_y=True)
    X = X[:, 20:24]  # 4 features: auto picks a k-d tree
    path = tmp_path / "model.npz"
    save_model(path, KNNClassifier(5, weights="distance").fit(X, y))
    estimator = load_model(path)
    assert estimator.algorithm_ == "kd_tree"
    distances, proba = SavedModel(*read_model(path)).neighbors_and_proba(X[:50] + 0.5)
    np.testing.assert_array_equal(proba, estimator.predict_proba(X[:50] + 0.5))
    np.testing.assert_array_equal(distances, estimator.kneighbors(X[:50] + 0.5)[0])


def test_predicting_an_image_imports_no_scikit_learn_pandas_or_mlflow(digits_model, tmp_path):
    path, _ = digits_model
    image = tmp_path / "one.png"
    Image.fromarray((drawn_one() * 15).astype(np.uint8)).save(image)
    code = (
        "import sys; from knnlab.cli import main; "
        f"main(['predict', '--model', {str(path)!r}, {str(image)!r}]); "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.splitlines()[-1].split())
    assert done.stdout.startswith(f"{image}: 1")
    assert not loaded & {"sklearn", "pandas", "mlflow", "matplotlib", "dvc"}


def test_the_program_exits_early_after_predict_and_loses_no_output(digits_model, tmp_path):
    """`knnlab predict` skips Python's teardown (cli.FAST_EXIT_COMMANDS): its whole output,
    through a pipe, and its exit codes must still arrive."""
    path, _ = digits_model
    images = []
    for i in range(40):  # more output than one pipe write
        image = tmp_path / f"one_{i}.png"
        Image.fromarray((drawn_one() * 15).astype(np.uint8)).save(image)
        images.append(str(image))
    command = [sys.executable, "-m", "knnlab", "predict", "--json", "--model", str(path)]
    done = subprocess.run([*command, *images], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [r["input"] for r in results] == images and {r["label"] for r in results} == {1}
    failed = subprocess.run([*command, str(tmp_path / "missing.png")], capture_output=True)
    assert failed.returncode == 2
    assert failed.stderr.decode().strip().endswith("missing.png: no such file")


def _ink_of_one(scale: int = 10) -> np.ndarray:
    """The drawn 1 as a (80, 80) bool mask of ink."""
    return np.kron(drawn_one() > 0, np.ones((scale, scale))).astype(bool)


def _image_of_one(kind: str, path):
    """A black-ink 1 saved in one of the formats users send."""
    ink = _ink_of_one()
    if kind == "transparent RGBA":  # ink opaque black, paper transparent black (0,0,0,0)
        rgba = np.zeros((*ink.shape, 4), np.uint8)
        rgba[ink, 3] = 255
        Image.fromarray(rgba, "RGBA").save(path)
    elif kind == "transparent grey LA":
        la = np.zeros((*ink.shape, 2), np.uint8)
        la[ink, 1] = 255
        Image.fromarray(la, "LA").save(path)
    elif kind == "palette with transparency":
        palette_index = np.where(ink, 1, 0).astype(np.uint8)  # 0: transparent, 1: black
        image = Image.fromarray(palette_index, "P")
        image.putpalette([0, 0, 0, 0, 0, 0] + [0, 0, 0] * 254)
        image.save(path, transparency=0)
    elif kind == "16-bit grey":
        values = np.where(ink, 0, 65535).astype(np.uint16)
        Image.fromarray(values).save(path)  # mode I;16
    elif kind == "JPEG":
        Image.fromarray(np.where(ink, 0, 255).astype(np.uint8), "L").convert("RGB").save(
            path, quality=85
        )
    elif kind == "palette, opaque":
        Image.fromarray(np.where(ink, 0, 255).astype(np.uint8), "L").convert("P").save(path)


@pytest.mark.parametrize(
    "kind",
    [
        "transparent RGBA",
        "transparent grey LA",
        "palette with transparency",
        "16-bit grey",
        "JPEG",
        "palette, opaque",
    ],
)
def test_a_black_one_is_a_one_in_every_image_format(digits_model, tmp_path, capsys, kind):
    path, _ = digits_model
    suffix = ".jpg" if kind == "JPEG" else ".png"
    image_path = tmp_path / f"one{suffix}"
    _image_of_one(kind, image_path)
    if kind == "16-bit grey":
        assert Image.open(image_path).mode.startswith("I"), "a real 16-bit file"
    [result] = predict_json(capsys, "--model", str(path), str(image_path))
    assert result["label"] == 1, (kind, result)


def test_transparency_becomes_white_paper_not_black():
    from knnlab.pipeline.io.inputs import _grey

    rgba = np.zeros((4, 4, 4), np.uint8)  # transparent black everywhere
    rgba[1, 1] = [0, 0, 0, 255]  # one opaque black pixel
    rgba[2, 2] = [0, 0, 0, 128]  # one half-transparent black pixel
    grey = np.asarray(_grey(Image.fromarray(rgba, "RGBA")))
    assert grey[0, 0] == 255 and grey[1, 1] == 0
    assert 120 <= grey[2, 2] <= 135, grey[2, 2]
    wide = Image.fromarray(np.array([[0, 65535], [32768, 1000]], np.uint16))
    np.testing.assert_array_equal(np.asarray(_grey(wide)), [[0, 255], [128, 4]])


def test_the_default_model_is_found_from_anywhere_in_the_repository(
    digits_model, tmp_path, monkeypatch, capsys
):
    import shutil

    path, _ = digits_model
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "models").mkdir()
    shutil.copy(path, tmp_path / "models" / "model.npz")
    deeper = tmp_path / "notebooks" / "drafts"
    deeper.mkdir(parents=True)
    np.save(deeper / "one.npy", drawn_one())
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(deeper)
    [result] = predict_json(capsys, "one.npy")
    assert result["label"] == 1


@pytest.mark.parametrize("with_repository", [False, True])
def test_without_a_model_the_message_says_where_it_looked(
    tmp_path, monkeypatch, capsys, with_repository
):
    monkeypatch.delenv("DVC_ROOT", raising=False)
    if with_repository:
        (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["predict", "x.png"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    if with_repository:
        assert error == (
            f"knnlab predict: error: no model at {tmp_path.resolve() / 'models/model.npz'} (the "
            "repository root holding the working directory); run `dvc repro train` there "
            "first, or pass --model FILE"
        )
    else:
        assert f"no dvc.yaml in {tmp_path.resolve()} or its parents; pass --model FILE" in error


@pytest.mark.parametrize("top", ["0", "-3", "two"])
def test_top_must_be_a_whole_number_of_at_least_one(digits_model, capsys, top):
    path, _ = digits_model
    with pytest.raises(SystemExit) as exit_:
        cli.main(["predict", "--model", str(path), "--top", top, "x.npy"])
    assert exit_.value.code == 2
    assert "argument --top: expected a whole number >= 1" in capsys.readouterr().err


# --- inputs that are not rows of numbers: one line naming the cause, nothing quoted ----------


def predict_error(capsys, model, *inputs) -> str:
    assert cli.main(["predict", "--model", str(model), *map(str, inputs)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.removeprefix("knnlab predict: error: ").rstrip("\n")


ROWS_WANTED = "give one row of 64 comma-separated numbers per query"


@pytest.mark.parametrize("line", ["a,b,c,d", "pixel0,pixel1", "hello world"])
def test_a_csv_of_one_text_line_has_no_rows_of_numbers(digits_model, tmp_path, capsys, line):
    path, _ = digits_model
    (tmp_path / "rows.csv").write_text(line + "\n")
    assert predict_error(capsys, path, tmp_path / "rows.csv") == (
        f"{tmp_path / 'rows.csv'}: holds no rows of numbers: its only line is text, read as a "
        f"header of column names; {ROWS_WANTED} (a header line before them is optional)"
    )


def test_a_header_line_is_optional_and_a_byte_order_mark_is_no_value(digits_model, tmp_path):
    from knnlab.pipeline.io.inputs import read_inputs

    _, X = digits_model

    rows = "\n".join(",".join(map(str, row)) for row in X[:2]) + "\n"
    header = ",".join(f"pixel{i}" for i in range(64)) + "\n"
    for text in (rows, header + rows, "\ufeff" + rows, "\ufeff" + header + rows):
        (tmp_path / "rows.csv").write_text(text, encoding="utf-8")
        got, names = read_inputs([str(tmp_path / "rows.csv")], 64, [8, 8], [0.0, 16.0])
        np.testing.assert_array_equal(got, X[:2])
        assert len(names) == 2


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((drawn_one() * 15).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, drawn_one())
    return buffer.getvalue()


def _parquet() -> bytes:
    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame({"a": [1.0]}).to_parquet(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            gzip.compress(b"1,2\n", mtime=0),
            "is gzip-compressed, not CSV text; decompress it first: gzip -dc {path} > plain.csv",
        ),
        (SAMPLES["xlsx"], "is an Excel workbook (.xlsx), not CSV text; save the sheet as CSV"),
        (_parquet(), "is a Parquet file, not CSV text; save the rows as CSV"),
        (_png(), "is a PNG image, not CSV text; give it as a file path ending in .png"),
        (_npy(), "is a .npy array, not CSV text; give it as a file path ending in .npy"),
        (
            "1,2\n3,caf\u00e9\n".encode("latin-1"),
            "is not UTF-8 text (the byte at offset 9 is not UTF-8); knnlab predict reads CSV",
        ),
        (b"1,2\x00\n", "holds NUL bytes: it is binary data, not CSV text"),
        (b"", f"is empty; {ROWS_WANTED}"),
        (b"1;2;3\n4;5;6\n", "looks separated by ';'; knnlab reads comma-separated CSV, with "),
        (b"0,5;1,5\n", "looks separated by ';'; knnlab reads comma-separated CSV, with decimal"),
        (
            b"a\tb\n1\t2\n",
            f"looks separated by tabs; knnlab reads comma-separated CSV: {ROWS_WANTED}",
        ),
        (b"a,b\n1,2\n3,secret\n", "row 2 after the header line, column 2, is not a number"),
        (b"1,2\n3,secret\n", "row 2, column 2, is not a number; every value of a row must"),
    ],
)
def test_a_csv_that_is_not_rows_of_numbers_says_what_it_is(
    digits_model, tmp_path, capsys, content, message
):
    path, _ = digits_model
    rows = tmp_path / "rows.csv"
    rows.write_bytes(content)
    error = predict_error(capsys, path, rows)
    assert error.startswith(f"{rows}: " + message.format(path=rows)), error
    assert "secret" not in error and "caf" not in error


def test_a_folder_and_a_fifo_are_named_as_such(digits_model, tmp_path, capsys):
    path, _ = digits_model
    (tmp_path / "images").mkdir()
    assert predict_error(capsys, path, tmp_path / "images") == (
        f"{tmp_path / 'images'}: is a folder; knnlab predict reads files: an image (.bmp, "
        ".gif, .jpeg, .jpg, .png, .tif, .tiff, .webp), a .npy array, CSV rows (.csv) or - for "
        f"CSV on standard input; give the files in it (e.g. {tmp_path / 'images' / '*.png'})"
    )
    os.mkfifo(tmp_path / "rows.csv")
    error = predict_error(capsys, path, tmp_path / "rows.csv")
    assert error.startswith(f"{tmp_path / 'rows.csv'}: is not a regular file (a pipe, socket")


def test_a_file_outside_the_project_is_not_quoted(digits_model, tmp_path, capsys):
    """A symlinked secret, whatever suffix it is given: no line and no leading bytes of it."""
    path, _ = digits_model
    secret = tmp_path / "outside" / "shadow"
    secret.parent.mkdir()
    secret.write_text("root:$6$salt$SECRETHASH:19000:0:99999:7:::\ndaemon:*:19000::::::\n")
    project = tmp_path / "project"
    project.mkdir()
    for name in ("rows.csv", "rows.npy", "rows.txt"):
        (project / name).symlink_to(secret)
        error = predict_error(capsys, path, project / name)
        said = error.removeprefix(f"{project / name}: ")  # the path may hold anything
        assert not [word for word in ("root", "SECRET", "salt", "daemon", "19000") if word in said]
    assert error.startswith(f"{project / 'rows.txt'}: row 1 after the header line, column 1")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_png(), "<stdin>: is a PNG image, not CSV text; give it as a file path ending in .png"),
        (
            b"\x80\x81random bytes\xfe\xff",
            "<stdin>: is not UTF-8 text (the byte at offset 0 is not UTF-8); knnlab predict reads "
            f"CSV rows as UTF-8 text: {ROWS_WANTED}, and images or .npy arrays as file paths "
            "(knnlab predict digit.png)",
        ),
        (
            gzip.compress(b"1,2\n", mtime=0),
            "<stdin>: is gzip-compressed, not CSV text; decompress it "
            "first: gzip -dc FILE | knnlab predict -",
        ),
        (b"", "<stdin>: is empty"),
    ],
)
def test_binary_data_on_stdin_is_named_through_the_real_program(
    digits_model, tmp_path, data, message
):
    path, _ = digits_model
    done = subprocess.run(
        [sys.executable, "-m", "knnlab", "predict", "--model", str(path), "-"],
        input=data,
        capture_output=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and done.stdout == b""
    error = done.stderr.decode()
    assert error.startswith(f"knnlab predict: error: {message}") and error.count("\n") == 1


def test_header_only_csv_and_a_folder_through_the_real_program(digits_model, tmp_path):
    path, _ = digits_model
    (tmp_path / "rows.csv").write_text("a,b,c,d\n")
    (tmp_path / "scans").mkdir()
    command = [sys.executable, "-m", "knnlab", "predict", "--model", str(path)]
    for name, message in [
        ("rows.csv", "rows.csv: holds no rows of numbers: its only line is text"),
        ("scans", "scans: is a folder; knnlab predict reads files"),
    ]:
        done = subprocess.run([*command, name], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 2 and done.stdout == "", done
        assert done.stderr.startswith(f"knnlab predict: error: {message}"), done.stderr
        assert done.stderr.count("\n") == 1


def test_a_npy_path_that_holds_something_else_says_what(digits_model, tmp_path, capsys):
    path, _ = digits_model
    np.savez(tmp_path / "arrays.npz", a=drawn_one())
    (tmp_path / "arrays.npy").write_bytes((tmp_path / "arrays.npz").read_bytes())
    assert predict_error(capsys, path, tmp_path / "arrays.npy") == (
        f"{tmp_path / 'arrays.npy'}: is a zip archive (an .npz?), not a .npy array; save the "
        "one array to predict with numpy.save"
    )
    (tmp_path / "one.npy").write_bytes(_png())
    assert predict_error(capsys, path, tmp_path / "one.npy").endswith(
        "one.npy: is a PNG image, not a .npy array; give it as a file path ending in .png "
        "(knnlab predict digit.png)"
    )
