"""FileValidator on real files: what it accepts, what it rejects, and why."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security_corpus import (
    ELF,
    MACHO,
    PDF,
    PE,
    SCRIPT,
    Corpus,
    ooxml_bytes,
    patch_central_directory,
    zip_bytes,
)

from ragtrail.instrument import Monitor
from ragtrail.security import EXTENSION_TYPES, FileValidator, ValidationResult, ZipLimits
from ragtrail.security._sniff import JSON_PARSED_BYTES

MALICIOUS = "malicious_file_upload"
INVALID = "input_validation_fail"


@pytest.fixture
def validator(monitor: Monitor, quarantine_dir: Path) -> FileValidator:
    return FileValidator(monitor=monitor, quarantine_dir=quarantine_dir)


VALID_DOCUMENTS = [
    ("report.pdf", PDF, "pdf"),
    ("notes.txt", "Grüße, 世界\n".encode(), "text"),
    ("bom.txt", b"\xef\xbb\xbfwith a byte order mark\n", "text"),
    ("README.md", b"# Title\n\nSome *text* with `code`.\n", "markdown"),
    ("page.html", b"\n  <!DOCTYPE html><html><body><p>Hi</p></body></html>", "html"),
    ("page.htm", b"<p>fragment</p>", "html"),
    ("data.json", b'{"documents": [1, 2.5, "three", null]}', "json"),
    ("list.json", b"  [true, false]  ", "json"),
    ("scores.csv", b"name,score\r\nann,1\r\nbob,2\r\n", "csv"),
    ("semicolons.csv", b"name;score;city\nann;1;Oslo\nbob;2;Rome\n", "csv"),
    ("quoted.csv", b'name,comment\nann,"says ""hi"", twice"\nbob,"multi\nline"\n', "csv"),
    ("single-column.csv", b"name\nann\nbob\n", "csv"),
    ("letter.docx", ooxml_bytes("docx"), "docx"),
    ("sheet.xlsx", ooxml_bytes("xlsx"), "xlsx"),
    ("deck.pptx", ooxml_bytes("pptx"), "pptx"),
    ("UPPER.PDF", PDF, "pdf"),
]


@pytest.mark.parametrize(("name", "data", "kind"), VALID_DOCUMENTS,
                         ids=[case[0] for case in VALID_DOCUMENTS])
def test_valid_documents_are_accepted(validator: FileValidator, corpus: Corpus, name: str,
                                      data: bytes, kind: str) -> None:
    """Each supported format, well formed, is accepted with its type, size and sha256."""
    path = corpus.write(name, data)
    result = validator.validate(path)
    assert result == ValidationResult(
        accepted=True, reason=None, sanitised_name=name, detected_type=kind, claimed_type=kind,
        size=len(data), sha256=hashlib.sha256(data).hexdigest())
    assert path.read_bytes() == data  # accepted files stay where they are, untouched


DISGUISED = [
    ("invoice.pdf", ELF, "elf-executable"),
    ("invoice2.pdf", PE, "pe-executable"),
    ("notes.txt", SCRIPT, "script"),
    ("bom-script.md", b"\xef\xbb\xbf#!/usr/bin/env python\nprint(1)\n", "script"),
    ("slides.pptx", MACHO, "mach-o-executable"),
    ("fat.docx", b"\xca\xfe\xba\xbe" + bytes(60), "mach-o-executable"),
    ("setup.exe", PE, "pe-executable"),
    ("no-extension", ELF, "elf-executable"),
]


@pytest.mark.parametrize(("name", "data", "kind"), DISGUISED, ids=[c[0] for c in DISGUISED])
def test_executables_are_malicious_whatever_the_name(validator: FileValidator, corpus: Corpus,
                                                     name: str, data: bytes, kind: str) -> None:
    """PE, ELF, Mach-O and shebang scripts are flagged malicious under any extension."""
    result = validator.validate(corpus.write(name, data))
    assert not result.accepted
    assert result.detected_type == kind
    assert result.event_type == MALICIOUS
    assert result.reason is not None
    assert "executable content" in result.reason


def test_text_starting_with_mz_is_not_an_executable(validator: FileValidator,
                                                    corpus: Corpus) -> None:
    """Plain text that happens to start with "MZ" is text, not a PE file."""
    result = validator.validate(corpus.write("mz.txt", b"MZ Brand annual report\n"))
    assert result.accepted


INVALID_FILES = [
    ("latin1.txt", b"caf\xe9 au lait\n", "binary", "invalid UTF-8 at offset 3"),
    ("nul.md", b"# Title\x00\n", "binary", "NUL byte at offset 7"),
    ("truncated-utf8.txt", b"ok \xe2\x82", "binary", "invalid UTF-8"),
    ("broken.json", b'{"a": ', "text", "not valid JSON"),
    ("deep.json", b"[" * 200_000 + b"]" * 200_000, "text", "not valid JSON"),
    ("bigint.json", b"1" * 5000, "text", "not valid JSON"),
    ("prose.csv", b"Hello, world. This, is, prose\nNo commas here\nx,y\n", "text",
     "inconsistent column counts"),
    ("unterminated.csv", b'a,b\n"open quote,2\n', "text", "CSV"),
    ("text.html", b"Just words, no tags\n", "text", "does not start with a tag"),
    ("fake.pdf", b"Not a PDF at all\n", "text", "content is text, not pdf"),
    ("cut.pdf", b"%PDF-1.7\n1 0 obj\n<<", "pdf", "truncated"),
    ("zip.pdf", zip_bytes({"a.txt": b"x"}), "zip", "content is zip, not pdf"),
    ("pdf.txt", PDF, "pdf", "content is pdf, not text"),
    ("png.md", b"\x89PNG\r\n\x1a\n" + bytes(40), "png", "content is png, not markdown"),
    ("plain.docx", zip_bytes({"a.txt": b"x"}), "zip", "content is zip, not docx"),
    ("empty-archive.docx", zip_bytes({}), "zip", "content is zip, not docx"),
    ("sheet.docx", ooxml_bytes("xlsx"), "xlsx", "content is xlsx, not docx"),
    ("not-zip.xlsx", b"PK\x03\x04 but nothing else", "zip", "corrupt ZIP"),
    ("legacy.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500), "ole2", "not docx"),
    ("bzip.docx", zip_bytes({"[Content_Types].xml": b"<x/>", "word/d.xml": b"x"},
                            compression=zipfile.ZIP_BZIP2), "zip", "compression method 12"),
    ("empty.txt", b"", "empty", "empty file"),
]


@pytest.mark.parametrize(("name", "data", "detected", "reason"), INVALID_FILES,
                         ids=[c[0] for c in INVALID_FILES])
def test_wrong_or_broken_content_is_an_input_validation_failure(
        validator: FileValidator, corpus: Corpus, name: str, data: bytes, detected: str,
        reason: str) -> None:
    """Type mismatches, bad encodings and broken documents are rejected as invalid input."""
    result = validator.validate(corpus.write(name, data))
    assert not result.accepted
    assert result.event_type == INVALID
    assert result.detected_type == detected
    assert result.reason is not None
    assert reason in result.reason


def test_size_limit(monitor: Monitor, corpus: Corpus, quarantine_dir: Path) -> None:
    """One byte over ``max_bytes`` is rejected; exactly ``max_bytes`` is fine."""
    validator = FileValidator(max_bytes=len(PDF), monitor=monitor, quarantine_dir=quarantine_dir)
    assert validator.validate(corpus.write("fits.pdf", PDF)).accepted
    result = validator.validate(corpus.write("big.pdf", PDF + b"\n"))
    assert (result.accepted, result.event_type) == (False, INVALID)
    assert result.reason == f"file is {len(PDF) + 1} bytes; the limit is {len(PDF)}"


def test_a_file_over_the_limit_is_neither_read_nor_quarantined(
        monitor: Monitor, corpus: Corpus, quarantine_dir: Path) -> None:
    """A 1 GiB sparse file against a 1 MiB limit: refused from its size on disk and left where
    it is (it was hashed whole and copied into the quarantine whole: 4 GiB read, 4 GiB
    written). An executable over the limit is still judged and quarantined as one."""
    validator = FileValidator(max_bytes=1 << 20, monitor=monitor, quarantine_dir=quarantine_dir)
    path = corpus.write("huge.pdf", PDF)
    os.truncate(path, 1 << 30)
    result = validator.validate(path)
    assert (result.accepted, result.event_type, result.detected_type, result.sha256) == (
        False, INVALID, "unread", "")
    assert result.reason == f"file is {1 << 30} bytes; the limit is {1 << 20}"
    assert path.exists()
    assert result.quarantine_path is None
    assert not quarantine_dir.exists()
    elf = corpus.write("tool.pdf", ELF)
    os.truncate(elf, 2 << 20)
    result = validator.validate(elf)
    assert (result.event_type, result.detected_type) == (MALICIOUS, "elf-executable")
    assert result.quarantine_path is not None
    assert not elf.exists()


def test_large_json_is_checked_without_parsing_it(validator: FileValidator,
                                                  corpus: Corpus) -> None:
    """JSON over 4 MiB is checked as text and by how it starts: parsing builds objects of
    about 25 times its size (a 50 MiB "[{},{},...]" took 1.3 GB and seconds of GIL)."""
    big = b"[" + b"{}," * (3 * JSON_PARSED_BYTES // 3 + 1) + b"{}]"
    tracemalloc.start()
    try:
        result = validator.validate(corpus.write("many.json", big))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (result.accepted, result.detected_type) == (True, "json")
    assert peak < 4 * JSON_PARSED_BYTES  # parsing it took over 100 MB
    not_json = b"<html>" + b" " * JSON_PARSED_BYTES
    result = validator.validate(corpus.write("page.json", not_json))
    assert (result.accepted, result.reason) == (False, "JSON does not start with a value")


def test_extension_allowlist(monitor: Monitor, corpus: Corpus, quarantine_dir: Path) -> None:
    """Only listed extensions pass, compared case-insensitively with or without the dot."""
    validator = FileValidator(allowed_extensions=["PDF", ".md"], monitor=monitor,
                              quarantine_dir=quarantine_dir)
    assert validator.validate(corpus.write("a.pdf", PDF)).accepted
    result = validator.validate(corpus.write("a.txt", b"hello\n"))
    assert (result.accepted, result.claimed_type) == (False, "text")
    assert result.reason == "extension '.txt' is not allowed"
    result = validator.validate(corpus.write("tool.exe.", b"hello\n"))
    assert (result.claimed_type, result.reason) == ("exe", "extension '.exe' is not allowed")


def test_unknown_extensions_are_refused_at_construction() -> None:
    """An extension without a content check cannot be allowed: the error lists the supported."""
    with pytest.raises(ValueError, match=r"no content check for '\.png'; supported: .*\.csv"):
        FileValidator(allowed_extensions=[".png"], quarantine_dir=None)
    with pytest.raises(ValueError, match="max_bytes"):
        FileValidator(max_bytes=0, quarantine_dir=None)
    assert set(EXTENSION_TYPES) == set(FileValidator(quarantine_dir=None).allowed_extensions)


def test_client_filename_decides_the_claim(validator: FileValidator, corpus: Corpus) -> None:
    """``filename=`` (the client's name) is sanitised and used instead of the path's name."""
    path = corpus.write("upload.part", PDF)
    result = validator.validate(path, filename="../../Quarterly\x00 report.pdf")
    assert (result.accepted, result.sanitised_name) == (True, "Quarterly_ report.pdf")


# -- ZIP-based formats ----------------------------------------------------------------------

def test_zip_bomb_by_compression_ratio(validator: FileValidator, corpus: Corpus) -> None:
    """10 MB of zeros in a 10 KB DOCX trips the ratio guard; nothing is extracted."""
    path = corpus.zip_bomb()
    assert path.stat().st_size < 100_000
    result = validator.validate(path)
    assert (result.accepted, result.event_type) == (False, MALICIOUS)
    assert result.reason == "ZIP bomb: an entry expands more than 100 times"


def test_zip_bomb_by_total_size(monitor: Monitor, corpus: Corpus, quarantine_dir: Path) -> None:
    """Many moderately compressible entries adding up past the limit are a bomb too."""
    limits = ZipLimits(max_uncompressed_bytes=1_000_000)
    validator = FileValidator(monitor=monitor, quarantine_dir=quarantine_dir, zip_limits=limits)
    parts = {f"word/media/p{i}.bin": os.urandom(200_000) for i in range(6)}
    result = validator.validate(corpus.ooxml("docx", extra=parts))
    assert (result.accepted, result.event_type) == (False, MALICIOUS)
    assert result.reason == "ZIP bomb: expands to more than 1000000 bytes"


def test_zip_bomb_by_entry_count(monitor: Monitor, corpus: Corpus, quarantine_dir: Path) -> None:
    """More entries than allowed is refused from the end record, before zipfile reads them."""
    validator = FileValidator(monitor=monitor, quarantine_dir=quarantine_dir,
                              zip_limits=ZipLimits(max_entries=10))
    parts = {f"word/p{i}.xml": b"<p/>" for i in range(10)}
    result = validator.validate(corpus.ooxml("docx", extra=parts))
    assert (result.accepted, result.event_type) == (False, MALICIOUS)
    assert result.reason == "ZIP bomb: more than 10 entries"


def test_small_entries_may_compress_well(validator: FileValidator, corpus: Corpus) -> None:
    """A small, very repetitive part (under the ratio floor) is normal XML, not a bomb."""
    path = corpus.ooxml("xlsx", extra={"xl/sharedStrings.xml": b"<si/>" * 15_000})
    assert validator.validate(path).accepted


def test_overlapping_entries_are_a_bomb(validator: FileValidator, corpus: Corpus) -> None:
    """Two directory entries sharing one local file's data (a non-recursive bomb)."""
    data = ooxml_bytes("docx", {"word/b.xml": b"<b/>" * 100})
    overlapped = patch_central_directory(data, 3, local_header_offset=0)
    result = validator.validate(corpus.write("overlap.docx", overlapped))
    assert (result.accepted, result.event_type) == (False, MALICIOUS)
    assert result.reason == "ZIP bomb: entries overlap"


@pytest.mark.parametrize("member", [
    "../evil.sh", "word/../../etc/cron.d/x", "/etc/passwd", "\\windows\\evil.dll",
    "C:/evil.dll", "word\\..\\..\\x", "word/doc\x00.exe",
])
def test_member_path_traversal(validator: FileValidator, corpus: Corpus, member: str) -> None:
    """Members escaping the archive (dot-dot, absolute, drive, NUL) are malicious."""
    # zipfile cuts names at NUL when writing, so a NUL goes in as "?" and is patched in.
    data = ooxml_bytes("docx", {member.replace("\x00", "?"): b"x"})
    data = data.replace(member.replace("\x00", "?").encode(), member.encode())
    result = validator.validate(corpus.write("member.docx", data))
    assert (result.accepted, result.event_type) == (False, MALICIOUS)
    assert result.reason == "ZIP member path escapes the archive (path traversal)"


def test_encrypted_member(validator: FileValidator, corpus: Corpus) -> None:
    """An encrypted member hides its content from every check: malicious."""
    data = patch_central_directory(ooxml_bytes("docx"), 2, flag_bits=0x1)
    result = validator.validate(corpus.write("locked.docx", data))
    assert (result.accepted, result.event_type) == (False, MALICIOUS)
    assert result.reason == "encrypted ZIP member (content cannot be checked)"


def test_duplicate_member_names(validator: FileValidator, corpus: Corpus) -> None:
    """Two members with one name (parsers disagree on which wins) are malicious."""
    data = ooxml_bytes("docx")
    with zipfile.ZipFile(corpus.write("dup.docx", data), "a") as archive, \
            pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("word/document.xml", b"<other/>")
    result = validator.validate(corpus.directory / "dup.docx")
    assert (result.accepted, result.reason) == (False, "duplicate ZIP member name")


@pytest.mark.parametrize(("kind", "member"), [
    ("docx", "word/vbaProject.bin"), ("xlsx", "xl/vbaProject.bin"), ("pptx", "ppt/vbaProject.bin"),
])
def test_macro_document_renamed_to_macro_free(validator: FileValidator, corpus: Corpus, kind: str,
                                              member: str) -> None:
    """A .docm/.xlsm/.pptm renamed to the macro-free extension is malicious."""
    result = validator.validate(corpus.ooxml(kind, extra={member: b"\xd0\xcf\x11\xe0"}))
    assert (result.accepted, result.event_type) == (False, MALICIOUS)
    assert result.detected_type == kind[:-1] + "m"
    assert result.reason == "macro-enabled document (VBA project)"


# -- what is not a file ---------------------------------------------------------------------

def test_symlink_is_refused_and_left_alone(validator: FileValidator, corpus: Corpus,
                                           quarantine_dir: Path) -> None:
    """A symlink is never followed (it could point at /etc/shadow) nor moved."""
    target = corpus.pdf()
    link = corpus.directory / "link.pdf"
    link.symlink_to(target)
    result = validator.validate(link)
    assert (result.accepted, result.event_type, result.sha256) == (False, INVALID, "")
    assert link.is_symlink()
    assert target.read_bytes() == PDF
    assert not quarantine_dir.exists()


def test_fifo_is_refused_without_blocking(validator: FileValidator, corpus: Corpus) -> None:
    """A named pipe is refused at once (opening it must not wait for a writer)."""
    fifo = corpus.directory / "pipe.txt"
    os.mkfifo(fifo)
    result = validator.validate(fifo)
    assert (result.accepted, result.reason) == (False, "not a regular file")


def test_missing_file_raises(validator: FileValidator, tmp_path: Path) -> None:
    """A path that does not exist is the caller's bug, not an attack: it raises."""
    with pytest.raises(FileNotFoundError):
        validator.validate(tmp_path / "nope.pdf")


# -- robustness ---------------------------------------------------------------------------------

_EXTENSIONS = [*EXTENSION_TYPES, ".exe", ""]


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096), extension=st.sampled_from(_EXTENSIONS))
def test_arbitrary_bytes_never_crash(monitor: Monitor, tmp_path: Path, data: bytes,
                                     extension: str) -> None:
    """Any bytes under any supported name give a result, never an exception."""
    path = tmp_path / "fuzz.bin"
    path.write_bytes(data)
    result = FileValidator(monitor=monitor, quarantine_dir=None).validate(
        path, filename=f"fuzz{extension}")
    assert result.accepted == (result.reason is None)
    assert result.sha256 == hashlib.sha256(data).hexdigest()


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["docx", "xlsx", "pptx"]),
       flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=1,
                      max_size=8))
def test_corrupted_archives_never_crash(monitor: Monitor, tmp_path: Path, kind: str,
                                        flips: list[tuple[int, int]]) -> None:
    """A real DOCX/XLSX/PPTX with bytes flipped anywhere is judged, never a crash."""
    data = bytearray(ooxml_bytes(kind))
    for position, mask in flips:
        data[position % len(data)] ^= mask
    path = tmp_path / f"fuzz.{kind}"
    path.write_bytes(bytes(data))
    result = FileValidator(monitor=monitor, quarantine_dir=None).validate(path)
    assert result.accepted == (result.reason is None)


# -- a file rewritten in place while it is validated (found by review) -------------------------

class _RewrittenWhileJudged(FileValidator):
    """A real validator; between hashing the file and judging it, the file is rewritten in
    place (same inode, same size, same modification time), as another writer with the file
    open could. Records what the checks then read."""

    def __init__(self, monitor: Monitor, path: Path, rewritten: bytes) -> None:
        super().__init__(monitor=monitor, quarantine_dir=None)
        self.path = path
        self.rewritten = rewritten
        self.seen = b""

    def _judge(self, f: Any, *args: Any) -> Any:
        before = os.stat(self.path)
        with open(self.path, "r+b") as out:
            out.write(self.rewritten)
        os.utime(self.path, ns=(before.st_atime_ns, before.st_mtime_ns))
        f.seek(0)
        self.seen = f.read()
        return super()._judge(f, *args)


def test_a_small_file_is_judged_as_it_was_hashed(monitor: Monitor, tmp_path: Path) -> None:
    """Broken JSON hashed, valid JSON judged: it was accepted with the broken bytes' hash.
    The checks now read the bytes that were hashed, and the change is refused."""
    hashed, rewritten = b'{"total": 1}}', b'{"total": 12}'
    path = tmp_path / "data.json"
    path.write_bytes(hashed)
    validator = _RewrittenWhileJudged(monitor, path, rewritten)
    result = validator.validate(path)
    assert validator.seen == hashed
    assert not result.accepted
    assert result.sha256 in ("", hashlib.sha256(hashed).hexdigest())


def test_a_large_file_rewritten_while_judged_is_refused(monitor: Monitor, tmp_path: Path,
                                                        stored_events: Any) -> None:
    """Over 1 MiB the checks read the file itself, which is then hashed again: a rewrite
    (even one that keeps the size and the modification time) is refused, not accepted with
    the other version's hash, and nothing is quarantined."""
    valid = b"[" + b"1," * 600_000 + b"1]"
    hashed = valid[:-1] + b" "  # the same size, broken
    path = tmp_path / "data.json"
    path.write_bytes(hashed)
    result = _RewrittenWhileJudged(monitor, path, valid).validate(path)
    assert (result.accepted, result.reason, result.sha256) == (
        False, "the file changed while it was validated", "")
    assert path.read_bytes() == valid
    [event] = stored_events(INVALID)
    assert "changed while it was validated" in event.description


def test_a_file_appended_to_while_validated_is_refused(monitor: Monitor,
                                                       tmp_path: Path) -> None:
    """A size that moved between opening and judging: refused whatever the checks saw."""
    path = tmp_path / "notes.md"
    path.write_bytes(b"# Notes\n")

    class Appending(FileValidator):
        def _judge(self, f: Any, *args: Any) -> Any:
            with open(path, "ab") as out:
                out.write(b"#!/bin/sh\n")
            return super()._judge(f, *args)

    result = Appending(monitor=monitor, quarantine_dir=None).validate(path)
    assert (result.accepted, result.reason) == (False, "the file changed while it was validated")


@pytest.mark.parametrize("name", ['{"client_secret": "Canary4242Secret", "n": 1}.pdf',
                                  "token: Canary4242Secret.pdf"])
def test_a_secret_in_a_rejected_file_s_name_reaches_neither_store_nor_quarantine(
        validator: FileValidator, corpus: Corpus, quarantine_dir: Path, monitor: Monitor,
        tmp_path: Path, name: str) -> None:
    """Sanitising the name turns the quotes and colon the redactor keys on into ``_``
    (``{_client_secret__ _Canary...``); the event and the quarantine's record show the name
    masked before it is sanitised. Both paths: rejected after reading, refused before."""
    rejected = validator.validate(corpus.write("upload", ELF), filename=name)
    refused = validator.refuse(name, "the body was cut off")
    assert (rejected.accepted, refused.accepted) == (False, False)
    assert rejected.quarantine_path is not None
    monitor.store.flush(timeout=10)
    events = list(monitor.store.events(limit=10))
    assert {e.event_type for e in events} == {MALICIOUS, INVALID}
    assert all("[REDACTED]" in e.description for e in events), [e.description for e in events]
    written = b"".join(p.read_bytes() for p in tmp_path.glob("audit.db*"))
    written += b"".join(p.read_bytes() for p in quarantine_dir.rglob("*")
                        if p.is_file() and p.read_bytes() != ELF)
    assert b"Canary4242Secret" not in written
