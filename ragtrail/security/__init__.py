"""Document validation with quarantine, upload helpers, and the start-up posture scan."""

from ragtrail.security._content import EXTENSION_TYPES
from ragtrail.security._names import escape_text, sanitize_filename
from ragtrail.security._posture import SecurityFinding, run_startup_scan, scan_posture
from ragtrail.security._quarantine import (
    Quarantine,
    QuarantineEntry,
    QuarantineError,
    QuarantineFull,
    QuarantineUsage,
)
from ragtrail.security._upload import UploadResult, save_upload_starlette, save_upload_wsgi
from ragtrail.security._validator import FileValidator, ValidationResult
from ragtrail.security._zipcheck import ZipLimits

__all__ = [
    "EXTENSION_TYPES",
    "FileValidator",
    "Quarantine",
    "QuarantineEntry",
    "QuarantineError",
    "QuarantineFull",
    "QuarantineUsage",
    "SecurityFinding",
    "UploadResult",
    "ValidationResult",
    "ZipLimits",
    "escape_text",
    "run_startup_scan",
    "sanitize_filename",
    "save_upload_starlette",
    "save_upload_wsgi",
    "scan_posture",
]
