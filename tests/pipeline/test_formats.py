"""Formats told by their first bytes, and the short printable excerpts messages quote."""

from __future__ import annotations

import io
import subprocess
import sys
import wave

import numpy as np
import pytest

from knnlab.pipeline.data.dataset import DataError
from knnlab.pipeline.data.tables import load_table
from knnlab.pipeline.io import formats
from knnlab.pipeline.io.formats import (
    EXCERPT_CHARS,
    FORMATS,
    HEAD_BYTES,
    LINE_CHARS,
    excerpt,
    excerpt_list,
    one_line,
    sniff,
)
from knnlab.pipeline.io.inputs import InputError, read_inputs

from ..support.format_samples import SAMPLES, TABLE

WHAT = {
    "gzip": "gzip-compressed",
    "bzip2": "bzip2-compressed",
    "xz": "xz-compressed",
    "zstd": "zstd-compressed",
    "zip": "a zip archive",
    "empty zip": "an empty zip archive",
    "xlsx": "an Excel workbook (.xlsx)",
    "xls": "an Excel 97-2003 workbook (or another OLE2 file)",
    "parquet": "a Parquet file",
    "npy": "a .npy array",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "gif": "a GIF image",
    "tiff": "a TIFF image",
    "webp": "a WebP image",
    "pdf": "a PDF document",
}
COMPRESSED = {"gzip", "bzip2", "xz", "zstd"}
IMAGE_SUFFIX = {
    "png": ".png",
    "jpeg": ".jpg",
    "gif": ".gif",
    "tiff": ".tif",
    "webp": ".webp",
}


def test_every_format_in_the_table_has_a_sample():
    assert {f.key for f in FORMATS} | {"xlsx"} == set(SAMPLES) == set(WHAT)


@pytest.mark.parametrize("key", list(SAMPLES))
def test_each_format_is_told_by_its_first_bytes(key):
    data = SAMPLES[key]
    found = sniff(data[:HEAD_BYTES], archive=data)
    assert found is not None, f"{key}: not recognised from {data[:HEAD_BYTES]!r}"
    assert found.key == key and found.what == WHAT[key]
    assert data.startswith(found.magic)
    assert found.compressor == (key if key in COMPRESSED else None)
    assert found.image_suffix == IMAGE_SUFFIX.get(key)


@pytest.mark.parametrize(
    ("head", "key"),
    [
        (b"GIF87a\x08\x00\x08\x00", "gif"),
        (b"GIF89a\x08\x00\x08\x00", "gif"),
        (b"II*\x00\x08\x00\x00\x00", "tiff"),  # little-endian
        (b"MM\x00*\x00\x00\x00\x08", "tiff"),  # big-endian
        (b"BZh9" + bytes(6), "bzip2"),
    ],
)
def test_each_variant_of_a_magic_is_told(head, key):
    assert sniff(head).key == key


def _wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(1)
        sound.setframerate(8000)
        sound.writeframes(bytes(16))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "head",
    [
        TABLE,
        b"\xef\xbb\xbf" + TABLE,  # a UTF-8 byte-order mark, as Excel writes CSV
        b"",
        b"BZhang,1\n",  # "BZh" then not a block size: text
        _wav(),  # RIFF, but WAVE, not WEBP
        b"\x89PN",  # a PNG magic cut short
        b"PK",
        b'{"x": 1}',
        b"\x00\x00\x08\x01\x00\x00\x00\x02",  # an IDX header
    ],
    ids=["csv", "bom-csv", "empty", "bzh-text", "wav", "png-cut", "pk", "json", "idx"],
)
def test_text_and_unknown_formats_are_none(head):
    assert sniff(head[:HEAD_BYTES], archive=head) is None


def test_a_workbook_is_a_zip_archive_without_the_whole_file():
    assert sniff(SAMPLES["xlsx"][:HEAD_BYTES]).key == "zip"


def test_a_zip_archive_that_does_not_open_is_not_taken_for_a_workbook():
    broken = b"PK\x03\x04" + b"xl/workbook.xml" + bytes(40)
    assert sniff(broken, archive=broken).key == "zip"


def test_the_archive_file_is_left_where_it_was():
    handle = io.BytesIO(SAMPLES["xlsx"])
    handle.seek(5)
    assert sniff(SAMPLES["xlsx"][:HEAD_BYTES], archive=handle).key == "xlsx"
    assert handle.tell() == 5
    assert formats.is_workbook(io.BytesIO(SAMPLES["zip"])) is False


def test_the_module_imports_only_the_standard_library():
    code = (
        "import sys; before = set(sys.modules); import knnlab.pipeline.io.formats; "
        "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split()) - {"knnlab"}
    assert loaded <= set(sys.stdlib_module_names), loaded - set(sys.stdlib_module_names)


# --- what each caller says of each format ---------------------------------------------------


@pytest.mark.parametrize("key", list(SAMPLES))
def test_predict_names_every_format_given_as_csv(tmp_path, key):
    path = tmp_path / "rows.csv"
    path.write_bytes(SAMPLES[key])
    with pytest.raises(InputError) as caught:
        read_inputs([str(path)], 2, None, [0.0, 1.0])
    message = str(caught.value)
    assert message.startswith(f"{path}: is {WHAT[key]}, not CSV text; "), message
    assert "\n" not in message
    if key in IMAGE_SUFFIX:
        suffix = IMAGE_SUFFIX[key]
        assert message.endswith(f"file path ending in {suffix} (knnlab predict digit{suffix})")
    if key in COMPRESSED:
        assert message.endswith(f"decompress it first: {key} -dc {path} > plain.csv")


@pytest.mark.parametrize("key", [k for k in SAMPLES if k != "npy"])
def test_predict_names_every_format_given_as_npy(tmp_path, key):
    path = tmp_path / "rows.npy"
    path.write_bytes(SAMPLES[key])
    with pytest.raises(InputError) as caught:
        read_inputs([str(path)], 2, None, [0.0, 1.0])
    expected = WHAT["zip" if key == "xlsx" else key]  # from its head only, a workbook is a zip
    if key in ("zip", "empty zip", "xlsx"):
        expected += " (an .npz?)"
    assert str(caught.value).startswith(f"{path}: is {expected}, not a .npy array; ")


def test_predict_says_what_to_do_with_an_empty_zip_or_a_pdf(tmp_path):
    for key in ("empty zip", "pdf"):
        path = tmp_path / "rows.csv"
        path.write_bytes(SAMPLES[key])
        with pytest.raises(InputError, match=r"not CSV text; give CSV rows of numbers$"):
            read_inputs([str(path)], 2, None, [0.0, 1.0])


@pytest.mark.parametrize("key", list(SAMPLES))
def test_fetch_names_every_format_given_as_csv(tmp_path, key):
    path = tmp_path / "t.csv"
    path.write_bytes(SAMPLES[key])
    with pytest.raises(DataError) as caught:
        load_table(path, "label")
    message = str(caught.value)
    assert message.startswith(f"data.path = {str(path)!r}: is {WHAT[key]}"), message
    assert "\n" not in message
    if key in IMAGE_SUFFIX or key in ("empty zip", "pdf"):
        assert message.endswith(", not CSV text; set data.path to a CSV or Parquet table")
    if key in COMPRESSED:
        assert f"(it starts with the {key} magic bytes " in message


def test_fetch_takes_a_parquet_file_named_parquet(tmp_path):
    path = tmp_path / "t.parquet"
    path.write_bytes(SAMPLES["parquet"])
    assert load_table(path, "label").feature_columns == ["x"]


# --- excerpts -------------------------------------------------------------------------------


def test_excerpt_quotes_a_value_and_escapes_what_is_not_printable():
    assert excerpt("a,b") == "'a,b'"
    assert excerpt("root:x:0:0\n\x1b[31m\x00") == "'root:x:0:0\\n\\x1b[31m\\x00'"
    assert excerpt(np.int64(1)) == "1"
    assert excerpt(np.array([1, 2])) == "[1, 2]"
    assert excerpt(None) == "None"


def test_excerpt_cuts_a_long_value():
    shown = excerpt("s" * 500)
    assert len(shown) == EXCERPT_CHARS and shown == "'" + "s" * (EXCERPT_CHARS - 4) + "..."
    assert excerpt("s" * (EXCERPT_CHARS - 2)) == "'" + "s" * (EXCERPT_CHARS - 2) + "'"


def test_excerpt_list_shows_what_fits_then_the_count():
    assert excerpt_list(["a", "b"]) == "'a', 'b'"
    names = [f"column_{i}" for i in range(50)]
    shown = excerpt_list(names)
    assert shown.startswith("'column_0', 'column_1', ") and shown.endswith(", ... (50 in all)")
    assert len(shown) <= LINE_CHARS + len(", ... (50 in all)")
    assert excerpt_list(["x" * 200]) == excerpt("x" * 200)  # one name is shown, cut


def test_one_line_folds_lines_escapes_control_characters_and_cuts():
    error = ValueError("bad value\n  in line 2:\t'\x1b[2J'\x00")
    assert one_line(error) == "bad value in line 2: '\\x1b[2J'\\x00"
    assert one_line("<U3") == "<U3"
    long = one_line(OSError("e" * 500))
    assert len(long) == LINE_CHARS and long.endswith("...")
