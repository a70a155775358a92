"""ZIP-based documents (DOCX, XLSX, PPTX): bombs, traversal and the right members.

Everything is decided from the central directory, never by extracting: the end-of-central-
directory record first (so a forged archive with a million entries is refused before Python
builds a million ``ZipInfo`` objects), then ``zipfile``'s own reading of the directory, so the
view is the one a downstream parser (python-docx, openpyxl) will have.
"""

from __future__ import annotations

import stat
import struct
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["OOXML_TYPES", "ZipLimits", "ZipVerdict", "inspect_zip"]

# ECMA-376 Part 2 (Open Packaging Conventions): every package has [Content_Types].xml; the
# main part lives under the application's folder.
OOXML_TYPES = {"docx": "word/", "xlsx": "xl/", "pptx": "ppt/"}
_CONTENT_TYPES = "[Content_Types].xml"
_VBA_PROJECT = "vbaproject.bin"  # ECMA-376 / MS-OFFMACRO: where the macros of a document live

# APPNOTE.TXT 4.3.16 (end of central directory) and 4.3.14/4.3.15 (ZIP64 record and locator).
_EOCD = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_MAX_COMMENT = 0xFFFF
_ENCRYPTED = 0x1  # general purpose bit 0
_LOCAL_HEADER_SIZE = 30
# A generous average size of one central directory entry (46 fixed bytes, name, extras).
_MAX_AVERAGE_ENTRY_BYTES = 300


@dataclass(frozen=True)
class ZipLimits:
    """How big a ZIP-based document may get once decompressed.

    ``max_ratio`` applies to entries of at least ``ratio_floor_bytes`` (small entries with a
    high ratio are harmless); the same grace rule as Apache POI's ZipSecureFile.
    """

    max_entries: int = 10_000
    max_uncompressed_bytes: int = 256 * 1024 * 1024
    max_ratio: float = 100.0
    ratio_floor_bytes: int = 100 * 1024

    def __post_init__(self) -> None:
        for name in ("max_entries", "max_uncompressed_bytes", "ratio_floor_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"ZipLimits.{name} must be >= 1; got {getattr(self, name)}")
        if self.max_ratio <= 1:
            raise ValueError(f"ZipLimits.max_ratio must be > 1; got {self.max_ratio}")


@dataclass(frozen=True)
class ZipVerdict:
    """``problem`` is None when the archive is acceptable; ``malicious`` says how bad it is."""

    detected_type: str
    problem: str | None = None
    malicious: bool = False


def inspect_zip(f: BinaryIO, size: int, limits: ZipLimits) -> ZipVerdict:
    """Check an archive against ``limits`` and tell which OOXML type it is, if any."""
    declared = _declared_entries(f, size)
    if isinstance(declared, ZipVerdict):
        return declared
    entries, directory_bytes = declared
    if entries > limits.max_entries or (
            directory_bytes > limits.max_entries * _MAX_AVERAGE_ENTRY_BYTES):
        return ZipVerdict("zip", f"ZIP bomb: more than {limits.max_entries} entries",
                          malicious=True)
    f.seek(0)
    try:
        with zipfile.ZipFile(f) as archive:
            infos = archive.infolist()
            directory_start = archive.start_dir
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError,
            ValueError, EOFError, struct.error) as exc:
        return ZipVerdict("zip", f"corrupt ZIP: {type(exc).__name__}")
    problem = (_bomb(infos, directory_start, limits) or _unsafe_member(infos))
    if problem is not None:
        return ZipVerdict("zip", problem, malicious=True)
    unsupported = next((i for i in infos if i.compress_type not in (
        zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)), None)
    if unsupported is not None:
        return ZipVerdict("zip", f"unsupported ZIP compression method {unsupported.compress_type}")
    kind = _ooxml_type(infos)
    if kind != "zip" and any(i.filename.lower().endswith(_VBA_PROJECT) for i in infos):
        # A macro-enabled document (.docm, .xlsm, .pptm) renamed to the macro-free extension.
        return ZipVerdict(f"{kind[:-1]}m", "macro-enabled document (VBA project)",
                          malicious=True)
    return ZipVerdict(kind)


def _declared_entries(f: BinaryIO, size: int) -> tuple[int, int] | ZipVerdict:
    """(entry count, central directory bytes) as zipfile will read them, or why not to read."""
    no_end_record = ZipVerdict("zip", "corrupt ZIP: no end of central directory record")
    tail_size = min(size, _EOCD.size + _MAX_COMMENT)
    f.seek(size - tail_size)
    tail = f.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        return no_end_record
    fields = _EOCD.unpack_from(tail, at)
    entries, directory_bytes = fields[4], fields[5]
    # zipfile (_EndRecData64) takes the counts from a ZIP64 record whenever a ZIP64 locator sits
    # just before the classic record, whatever the classic record says, and reads that ZIP64
    # record just before the locator, ignoring the offset the locator gives. Read it there too.
    record_at = size - tail_size + at - _EOCD64_LOCATOR.size - _EOCD64.size
    if record_at >= 0:
        f.seek(record_at)
        ends = f.read(_EOCD64.size + _EOCD64_LOCATOR.size)
        if ends.startswith(b"PK\x06\x06") and ends[_EOCD64.size:].startswith(b"PK\x06\x07"):
            if _EOCD64_LOCATOR.unpack_from(ends, _EOCD64.size)[2] != record_at:
                # A second record where the locator points shows other readers other entries.
                return ZipVerdict("zip", "ZIP64 locator does not point at the ZIP64 end record "
                                  "(readers would disagree on the entries)", malicious=True)
            fields64 = _EOCD64.unpack_from(ends)
            return fields64[7], fields64[8]
    if entries == 0xFFFF or directory_bytes == 0xFFFFFFFF:
        return no_end_record  # the true counts were to be in a ZIP64 record
    return entries, directory_bytes


def _bomb(infos: list[zipfile.ZipInfo], directory_start: int, limits: ZipLimits) -> str | None:
    if len(infos) > limits.max_entries:
        return f"ZIP bomb: more than {limits.max_entries} entries"
    total = 0
    for info in infos:
        total += info.file_size
        if info.file_size >= limits.ratio_floor_bytes and (
                info.file_size > limits.max_ratio * max(info.compress_size, 1)):
            return f"ZIP bomb: an entry expands more than {limits.max_ratio:g} times"
    if total > limits.max_uncompressed_bytes:
        return f"ZIP bomb: expands to more than {limits.max_uncompressed_bytes} bytes"
    # Entries whose data overlap let a few kilobytes stand for gigabytes (Fifield's
    # non-recursive bomb); in a well-formed archive each entry ends before the next begins.
    spans = sorted((i.header_offset, i.header_offset + _LOCAL_HEADER_SIZE + i.compress_size)
                   for i in infos)
    bounds = [start for start, _ in spans[1:]] + [directory_start]
    if spans and any(end > bound for (_, end), bound in zip(spans, bounds, strict=True)):
        return "ZIP bomb: entries overlap"
    return None


def _unsafe_member(infos: list[zipfile.ZipInfo]) -> str | None:
    seen: set[str] = set()
    for info in infos:
        name = info.orig_filename  # zipfile cuts .filename at a NUL; the original keeps it
        parts = name.replace("\\", "/").split("/")
        if ("\x00" in name or name.startswith(("/", "\\")) or ".." in parts
                or (len(name) > 1 and name[1] == ":")):
            return "ZIP member path escapes the archive (path traversal)"
        if stat.S_IFMT(info.external_attr >> 16) not in (0, stat.S_IFREG, stat.S_IFDIR):
            # Unix file type bits: unzip and bsdtar recreate a symlink member as a link (to
            # /etc/shadow, or a folder that later members are written through).
            return "ZIP member is a symbolic link or special file"
        if info.flag_bits & _ENCRYPTED:
            return "encrypted ZIP member (content cannot be checked)"
        if name in seen:
            # Two entries with one name: parsers disagree on which one wins.
            return "duplicate ZIP member name"
        seen.add(name)
    return None


def _ooxml_type(infos: list[zipfile.ZipInfo]) -> str:
    names = [i.filename for i in infos]
    if _CONTENT_TYPES not in names:
        return "zip"
    for kind, folder in OOXML_TYPES.items():
        if any(name.startswith(folder) for name in names):
            return kind
    return "zip"
