"""A small file of each format knnlab tells by its first bytes, as its own tools write it:
shared by the tests of formats, predict and fetch."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile

import numpy as np
import pandas as pd
from PIL import Image

TABLE = b"x,label\n0,0\n1,1\n"


def _zip(*members: str) -> bytes:
    """A zip archive of empty files named ``members``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in members:
            archive.writestr(name, "")
    return buffer.getvalue()


def _written(save) -> bytes:
    """The bytes ``save`` writes to a binary file."""
    buffer = io.BytesIO()
    save(buffer)
    return buffer.getvalue()


def _image(format_name: str) -> bytes:
    return _written(lambda out: Image.new("L", (8, 8), 200).save(out, format=format_name))


# A file of each format, as its own tools write it, by the key sniff gives it.
SAMPLES = {
    "gzip": gzip.compress(TABLE, mtime=0),
    "bzip2": bz2.compress(TABLE),
    "xz": lzma.compress(TABLE),
    # `printf 'x,y\n0,0\n' | zstd -c --no-check`: the standard library has no zstd.
    "zstd": b"(\xb5/\xfd\x00XA\x00\x00x,y\n0,0\n",
    "zip": _zip("t.csv"),
    "empty zip": _zip(),
    "xlsx": _zip("[Content_Types].xml", "xl/workbook.xml"),  # the parts that tell a workbook
    # Nothing at hand writes Excel 97-2003; its OLE2 header, then zeros, is what sniff reads.
    "xls": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504),
    "parquet": _written(pd.DataFrame({"x": [0.0, 1.0], "label": [0, 1]}).to_parquet),
    "npy": _written(lambda out: np.save(out, np.arange(4.0))),
    "png": _image("PNG"),
    "jpeg": _image("JPEG"),
    "gif": _image("GIF"),
    "tiff": _image("TIFF"),
    "webp": _image("WEBP"),
    "pdf": _image("PDF"),
}
