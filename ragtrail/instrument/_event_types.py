"""The security event types ragtrail itself emits, with their usual severity.

Names follow the OWASP Application Logging Vocabulary where it has one (``authn_login_fail``,
``authz_fail``, ``input_validation_fail``, ``malicious_*``); the rest are ragtrail's own,
in the same lowercase ``noun_verb`` style. ``docs/security-events.md`` says what triggers each
one; a test keeps that page and this table in step. Applications may record any other type
with ``ragtrail.security_event``.
"""

from __future__ import annotations

from typing import Final

from ragtrail._records import Severity

__all__ = [
    "ALERT_CALLBACK_FAILURE",
    "AUTHN_LOGIN_FAIL",
    "AUTHZ_FAIL",
    "DEFAULT_SEVERITY",
    "DEPENDENCY_UNHEALTHY",
    "FILE_INTEGRITY_FAIL",
    "FUNCTION_ERROR",
    "INPUT_VALIDATION_FAIL",
    "MALICIOUS_FILE_UPLOAD",
    "MALICIOUS_HEADER_INJECTION",
    "MALICIOUS_PATH_TRAVERSAL",
    "QUARANTINE_OVERFLOW",
    "REQUEST_TOO_LARGE",
    "RESOURCE_THRESHOLD",
    "SECURITY_POSTURE_FINDING",
    "SERVER_ERROR",
    "SLOW_CALL",
]

# OWASP Application Logging Vocabulary names
AUTHN_LOGIN_FAIL: Final = "authn_login_fail"
AUTHZ_FAIL: Final = "authz_fail"
INPUT_VALIDATION_FAIL: Final = "input_validation_fail"
MALICIOUS_PATH_TRAVERSAL: Final = "malicious_path_traversal"
MALICIOUS_HEADER_INJECTION: Final = "malicious_header_injection"
MALICIOUS_FILE_UPLOAD: Final = "malicious_file_upload"

# ragtrail's own
REQUEST_TOO_LARGE: Final = "request_too_large"
SERVER_ERROR: Final = "server_error"
FUNCTION_ERROR: Final = "function_error"
SLOW_CALL: Final = "slow_call"
DEPENDENCY_UNHEALTHY: Final = "dependency_unhealthy"
RESOURCE_THRESHOLD: Final = "resource_threshold"
SECURITY_POSTURE_FINDING: Final = "security_posture_finding"
FILE_INTEGRITY_FAIL: Final = "file_integrity_fail"
ALERT_CALLBACK_FAILURE: Final = "alert_callback_failure"
QUARANTINE_OVERFLOW: Final = "quarantine_overflow"

DEFAULT_SEVERITY: Final[dict[str, Severity]] = {
    AUTHN_LOGIN_FAIL: Severity.MEDIUM,
    AUTHZ_FAIL: Severity.MEDIUM,
    INPUT_VALIDATION_FAIL: Severity.HIGH,
    MALICIOUS_PATH_TRAVERSAL: Severity.HIGH,
    MALICIOUS_HEADER_INJECTION: Severity.HIGH,
    MALICIOUS_FILE_UPLOAD: Severity.HIGH,
    REQUEST_TOO_LARGE: Severity.MEDIUM,
    SERVER_ERROR: Severity.HIGH,
    FUNCTION_ERROR: Severity.MEDIUM,
    SLOW_CALL: Severity.LOW,
    DEPENDENCY_UNHEALTHY: Severity.HIGH,
    RESOURCE_THRESHOLD: Severity.MEDIUM,
    SECURITY_POSTURE_FINDING: Severity.MEDIUM,
    FILE_INTEGRITY_FAIL: Severity.HIGH,
    ALERT_CALLBACK_FAILURE: Severity.MEDIUM,
    QUARANTINE_OVERFLOW: Severity.MEDIUM,
}
"""The severity each type is recorded with unless its trigger says otherwise (a burst of
authentication failures is high, a non-critical failing dependency medium...)."""
