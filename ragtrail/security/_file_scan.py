"""One streaming pass over a file being validated (its size, sha256, first and last bytes),
and whether the file was written to since it was opened.

The verdict must describe the bytes hashed even if someone writes to the file meanwhile: a file
of up to 1 MiB is judged from the one chunk the pass read; a larger one is hashed again if a
check read it; and a file whose size, times or hash moved while it was validated is refused.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import BinaryIO

from ragtrail.security._sniff import EXECUTABLE_TYPES, Utf8Check, magic_type

__all__ = ["Scan", "changed_since", "scan_file", "sha256_of", "starts_executable"]

_CHUNK = 1024 * 1024
_HEAD = 8192
_TAIL = 1024  # PDF readers look for %%EOF in the last 1024 bytes (ISO 32000-1 7.5.5, Acrobat)


@dataclass(frozen=True)
class Scan:
    size: int
    sha256: str
    head: bytes
    tail: bytes
    copy: bytes | None  # every byte hashed, when they came in one chunk (no memory added)


def scan_file(f: BinaryIO, utf8: Utf8Check | None, limit: int) -> Scan:
    """Size, sha256, first bytes and last bytes, in one streaming pass of at most ``limit``
    bytes and a chunk; and the file's bytes when they all came in the first chunk."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    tail = b""
    first = b""
    while size < limit and (chunk := f.read(_CHUNK)):
        if size < _HEAD:
            head += chunk[:_HEAD - size]
        first = first or chunk
        digest.update(chunk)
        if utf8 is not None:
            utf8.feed(chunk)
        size += len(chunk)
        tail = (tail + chunk[-_TAIL:])[-_TAIL:]
    if utf8 is not None:
        utf8.feed(b"", final=True)
    return Scan(size, digest.hexdigest(), head, tail, first if len(first) == size else None)


def changed_since(f: BinaryIO, before: os.stat_result, scan: Scan, *, reread: bool) -> bool:
    """Whether the file was written to since it was opened: its size or times moved, or (for a
    file the checks read again, beyond the scan's copy) its bytes hash differently now. The
    hash catches a rewrite within the timestamps' granularity (a few milliseconds)."""
    after = os.fstat(f.fileno())
    if ((after.st_size, after.st_mtime_ns, after.st_ctime_ns)
            != (before.st_size, before.st_mtime_ns, before.st_ctime_ns)):
        return True
    if scan.copy is not None or not reread:
        return False
    f.seek(0)
    return sha256_of(f) != scan.sha256


def starts_executable(f: BinaryIO) -> bool:
    """Whether the file starts as an executable does (read from the start, then rewound)."""
    head = f.read(_HEAD)
    f.seek(0)
    return magic_type(head) in EXECUTABLE_TYPES


def sha256_of(f: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := f.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()
