"""What a file is, told by its first bytes, and how much of a file a message may quote.

``knnlab predict`` and ``fetch`` refuse a file that is not what its name says (a gzip file,
a workbook or an image named .csv) by saying what it is: :func:`sniff` tells that from the
first :data:`HEAD_BYTES` bytes, and each caller says what to do about it. A message may
repeat a piece of a file only through :func:`excerpt`, :func:`excerpt_list` or
:func:`one_line`: short, printable, on one line.

Standard library only: ``knnlab predict`` imports it without pandas or scikit-learn.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import BinaryIO

HEAD_BYTES = 16  # what sniff needs of a file: the furthest byte it looks at is WebP's 12th


@dataclass(frozen=True)
class Format:
    """A file format, as its first bytes show it.

    key : a short name for a caller's table of what to do ("gzip", "xlsx", "png", ...); two
        formats with two magics (GIF, TIFF) share one key.
    what : the format in a message, after "is" ("a PNG image", "gzip-compressed").
    magic : the bytes a file of this format starts with.
    compressor : for a compressed file, the tool that decompresses it with ``-dc``.
    image_suffix : the file suffix an image of this format takes, for an image.
    """

    key: str
    what: str
    magic: bytes
    compressor: str | None = None
    image_suffix: str | None = None


def _compressed(tool: str, magic: bytes) -> Format:
    return Format(tool, f"{tool}-compressed", magic, compressor=tool)


def _image(key: str, name: str, magic: bytes, suffix: str) -> Format:
    return Format(key, f"a {name} image", magic, image_suffix=suffix)


ZIP_MAGIC = b"PK\x03\x04"
XLSX = Format("xlsx", "an Excel workbook (.xlsx)", ZIP_MAGIC)  # a zip archive with xl/ parts
FORMATS = (
    _compressed("gzip", b"\x1f\x8b"),
    _compressed("bzip2", b"BZh"),  # then the block size, a digit (see sniff)
    _compressed("xz", b"\xfd7zXZ\x00"),
    _compressed("zstd", b"\x28\xb5\x2f\xfd"),
    Format("zip", "a zip archive", ZIP_MAGIC),
    Format("empty zip", "an empty zip archive", b"PK\x05\x06"),
    Format(
        "xls",
        "an Excel 97-2003 workbook (or another OLE2 file)",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
    ),
    Format("parquet", "a Parquet file", b"PAR1"),
    Format("npy", "a .npy array", b"\x93NUMPY"),
    _image("png", "PNG", b"\x89PNG\r\n\x1a\n", ".png"),
    _image("jpeg", "JPEG", b"\xff\xd8\xff", ".jpg"),
    _image("gif", "GIF", b"GIF87a", ".gif"),
    _image("gif", "GIF", b"GIF89a", ".gif"),
    _image("tiff", "TIFF", b"II*\x00", ".tif"),
    _image("tiff", "TIFF", b"MM\x00*", ".tif"),
    _image("webp", "WebP", b"RIFF", ".webp"),  # then the size, then WEBP (see sniff)
    Format("pdf", "a PDF document", b"%PDF-"),
)


def sniff(head: bytes, archive: bytes | BinaryIO | None = None) -> Format | None:
    """The format ``head``, a file's first bytes (:data:`HEAD_BYTES` suffice), shows, or
    None for none of :data:`FORMATS` (text, or a format not known here).

    archive : the whole file, as bytes or a seekable binary file (left where it was), to
        tell an Excel workbook (:data:`XLSX`) from another zip archive; without it, a
        workbook is a zip archive.
    """
    for found in FORMATS:
        if not head.startswith(found.magic):
            continue
        if found.key == "bzip2" and not head[3:4].isdigit():
            continue  # text may start "BZh"; bzip2 writes the block size there
        if found.key == "webp" and head[8:12] != b"WEBP":
            continue  # a RIFF file may hold sound or video (WAVE, AVI)
        if found.key == "zip" and archive is not None and is_workbook(archive):
            return XLSX
        return found
    return None


def is_workbook(archive: bytes | BinaryIO) -> bool:
    """Whether the zip archive ``archive`` (bytes, or a seekable binary file, left where it
    was) is an Excel workbook: its parts live under xl/."""
    import zipfile  # here: only a zip archive pays for it (it loads bz2 and lzma)

    handle = io.BytesIO(archive) if isinstance(archive, bytes | bytearray) else archive
    position = handle.tell()
    try:
        with zipfile.ZipFile(handle) as opened:
            return any(name.startswith("xl/") for name in opened.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    finally:
        handle.seek(position)


EXCERPT_CHARS = 60  # the most of any one name or value a message quotes
LINE_CHARS = 80  # the most of a library's error, or of a list of names, a message repeats


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def excerpt(value: object) -> str:
    """``value`` quoted for a message: its repr (text in quotes, non-printable characters
    escaped), cut to :data:`EXCERPT_CHARS`. An array or a numpy scalar (anything with
    ``tolist``) is shown as the Python value it holds: ``1``, not ``np.int64(1)``."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        value = tolist()
    return _cut(_printable(repr(value)), EXCERPT_CHARS)


def excerpt_list(values) -> str:
    """Names for a message, each an :func:`excerpt`, as many as fit in :data:`LINE_CHARS`,
    then how many there are in all."""
    shown: list[str] = []
    length = 0
    for value in values:
        piece = excerpt(value)
        if shown and length + len(piece) > LINE_CHARS:
            return f"{', '.join(shown)}, ... ({len(values)} in all)"
        shown.append(piece)
        length += len(piece) + 2
    return ", ".join(shown)


def one_line(value: object) -> str:
    """A library's error (or a value it read, such as a dtype) for a message, which may
    repeat a piece of the file: its text on one line, non-printable characters escaped,
    cut to :data:`LINE_CHARS`."""
    return _cut(_printable(" ".join(str(value).split())), LINE_CHARS)
