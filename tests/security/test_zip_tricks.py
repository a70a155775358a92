"""Archive tricks aimed at the readers after the validator: a ZIP64 end record that only the
validator would read, and members that unzip recreates as symbolic links."""

from __future__ import annotations

import io
import stat
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from security_corpus import Corpus, ooxml_bytes

from ragtrail.instrument import Monitor
from ragtrail.security import FileValidator

MALICIOUS = "malicious_file_upload"
DECOY = ("ZIP64 locator does not point at the ZIP64 end record "
         "(readers would disagree on the entries)")

# APPNOTE.TXT 4.3.16 (end of central directory), 4.3.14 and 4.3.15 (ZIP64 record and locator).
EOCD = struct.Struct("<4s4H2LH")
ZIP64_RECORD = struct.Struct("<4sQ2H2L4Q")
ZIP64_LOCATOR = struct.Struct("<4sLQL")
# More central directory entries than the default ZipLimits.max_entries (10,000), few enough
# to build quickly: listing them is what zipfile must not be asked to do.
MANY = 50_000


@pytest.fixture
def validator(monitor: Monitor, quarantine_dir: Path) -> FileValidator:
    return FileValidator(monitor=monitor, quarantine_dir=quarantine_dir)


def zip64_record(entries: int, directory_bytes: int, directory_at: int) -> bytes:
    return ZIP64_RECORD.pack(b"PK\x06\x06", ZIP64_RECORD.size - 12, 45, 45, 0, 0, entries,
                             entries, directory_bytes, directory_at)


def with_zip64_ends(data: bytes, *, decoy: bool = False,
                    classic: tuple[int, int] | None = None) -> bytes:
    """``data`` (an archive without a comment) ending the ZIP64 way: record, locator, classic.

    ``decoy`` puts a ZIP64 record claiming one entry before the central directory and points
    the locator at it; ``classic`` puts these (entries, directory bytes) in the classic record
    instead of the "see ZIP64" markers.
    """
    fields = EOCD.unpack(data[-EOCD.size:])
    entries, directory_bytes, directory_at = fields[4], fields[5], fields[6]
    body, directory = data[:directory_at], data[directory_at:-EOCD.size]
    decoy_record = zip64_record(1, 46, directory_at + ZIP64_RECORD.size) if decoy else b""
    real_directory_at = directory_at + len(decoy_record)
    record_at = real_directory_at + directory_bytes
    locator = ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, directory_at if decoy else record_at, 1)
    classic_entries, classic_bytes = classic or (0xFFFF, 0xFFFFFFFF)
    end = EOCD.pack(b"PK\x05\x06", 0, 0, classic_entries, classic_entries, classic_bytes,
                    0xFFFFFFFF, 0)
    return (body + decoy_record + directory
            + zip64_record(entries, directory_bytes, real_directory_at) + locator + end)


def many_entries(count: int) -> bytes:
    """An archive of ``count`` central directory entries naming one empty local file."""
    local = b"PK\x03\x04" + bytes(26)
    entry = struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0,
                        1, 0, 0, 0, 0, 0, 0) + b"a"
    end = EOCD.pack(b"PK\x05\x06", 0, 0, count, count, len(entry) * count, len(local), 0)
    return local + entry * count + end


def validate_traced(validator: FileValidator, path: Path) -> tuple[bool, str | None, int]:
    """(accepted, reason, peak bytes allocated while validating)."""
    tracemalloc.start()
    try:
        result = validator.validate(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result.accepted, result.reason, peak


def test_zip64_locator_must_point_at_the_record_zipfile_reads(validator: FileValidator,
                                                              corpus: Corpus) -> None:
    """zipfile reads the ZIP64 record just before the locator, not where the locator points: a
    decoy record there is refused, while the honest ZIP64 layout stays a valid document."""
    honest = validator.validate(corpus.write("zip64.docx", with_zip64_ends(ooxml_bytes("docx"))))
    assert (honest.accepted, honest.detected_type) == (True, "docx")
    path = corpus.write("decoy.docx", with_zip64_ends(ooxml_bytes("docx"), decoy=True))
    result = validator.validate(path)
    assert (result.accepted, result.event_type, result.reason) == (False, MALICIOUS, DECOY)


def test_zip64_decoy_is_refused_before_zipfile_lists_the_entries(validator: FileValidator,
                                                                 corpus: Corpus) -> None:
    """A decoy claiming 1 entry in front of a real record claiming 50,000 (a million in the
    attack: 13 s and 300 MB per upload) is refused without building a ZipInfo per entry."""
    path = corpus.write("decoy.docx", with_zip64_ends(many_entries(MANY), decoy=True))
    accepted, reason, peak = validate_traced(validator, path)
    assert (accepted, reason) == (False, DECOY)
    assert peak < 4 * 1024 * 1024  # listing the 50,000 entries takes over 15 MB


def test_zip64_counts_win_over_the_classic_record(validator: FileValidator,
                                                  corpus: Corpus) -> None:
    """zipfile takes the counts from a ZIP64 record even when the classic record holds its own
    (1 entry here): the entry limit is checked on the ZIP64 counts, before listing."""
    data = with_zip64_ends(many_entries(MANY), classic=(1, 47))
    accepted, reason, peak = validate_traced(validator, corpus.write("classic.docx", data))
    assert (accepted, reason) == (False, "ZIP bomb: more than 10000 entries")
    assert peak < 4 * 1024 * 1024


def document_with(member: zipfile.ZipInfo, data: bytes,
                  extra: zipfile.ZipInfo | None = None) -> bytes:
    """A DOCX with ``member`` holding ``data`` and, if given, ``extra`` after it."""
    buffer = io.BytesIO(ooxml_bytes("docx"))
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr(member, data)
        if extra is not None:
            archive.writestr(extra, b"written through the link\n")
    return buffer.getvalue()


def unix_member(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: unzip and bsdtar honour the file type in the high bits
    info.external_attr = mode << 16
    return info


@pytest.mark.parametrize(("name", "mode", "data", "through"), [
    ("word/media/image1.png", stat.S_IFLNK | 0o777, b"/etc/shadow", None),
    ("word/media", stat.S_IFLNK | 0o777, b"/home/user/.ssh", "word/media/authorized_keys"),
    ("word/media/pipe.png", stat.S_IFIFO | 0o644, b"", None),
], ids=["link-to-host-file", "link-to-folder-written-through", "fifo"])
def test_link_and_special_members_are_refused(validator: FileValidator, corpus: Corpus,
                                              name: str, mode: int, data: bytes,
                                              through: str | None) -> None:
    """A member whose Unix mode is a symlink (or other special file) is malicious: unzip would
    link word/media/image1.png to /etc/shadow, or write later members through a linked folder.
    The same members as a regular file and a folder are fine."""
    regular = document_with(unix_member(name, stat.S_IFREG | 0o644), data,
                            extra=unix_member("word/theme/", stat.S_IFDIR | 0o755))
    assert validator.validate(corpus.write("regular.docx", regular)).accepted
    extra = None if through is None else unix_member(through, stat.S_IFREG | 0o644)
    path = corpus.write("link.docx", document_with(unix_member(name, mode), data, extra=extra))
    result = validator.validate(path)
    assert (result.accepted, result.event_type) == (False, MALICIOUS)
    assert result.reason == "ZIP member is a symbolic link or special file"
