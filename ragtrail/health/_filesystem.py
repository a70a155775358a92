"""A filesystem check: write, read back and remove a small file, then look at free space.

Writing proves more than ``os.access``: a read-only remount, a full disk or a broken network
volume all pass an access check and fail a write.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from ragtrail.health._check import CheckResult, HealthCheck

__all__ = ["FilesystemCheck"]


class FilesystemCheck(HealthCheck):
    """Check that ``path`` (a directory) is writable and has enough free space.

    Observed value: the volume's used space in percent.

    >>> FilesystemCheck("/var/lib/rag", min_free_percent=10).key
    'disk:utilization'
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        min_free_bytes: int | None = None,
        min_free_percent: float | None = None,
        name: str = "disk",
        critical: bool = True,
        timeout: float | None = None,
    ) -> None:
        if min_free_bytes is not None and min_free_bytes < 0:
            raise ValueError(f"min_free_bytes must be >= 0; got {min_free_bytes}")
        if min_free_percent is not None and not 0 <= min_free_percent <= 100:
            raise ValueError(f"min_free_percent must be 0 to 100; got {min_free_percent}")
        super().__init__(name, critical=critical, timeout=timeout, measurement="utilization",
                         component_type="system")
        self.path = Path(path)
        self.min_free_bytes = min_free_bytes
        self.min_free_percent = min_free_percent

    def check(self) -> CheckResult:
        try:
            problems = self._round_trip()
        except OSError as exc:  # read-only, full, gone: said with the path; usage still shown
            problems = [f"cannot write to {self.path}: {exc.strerror or exc}"]
        try:
            usage = shutil.disk_usage(self.path)
        except OSError as exc:
            output = problems[0] if problems else \
                f"cannot read the free space of {self.path}: {exc.strerror or exc}"
            return CheckResult("fail", output, observed_unit="percent")
        used_percent = round(100.0 * (usage.total - usage.free) / usage.total, 1) \
            if usage.total else 0.0
        free_percent = 100.0 * usage.free / usage.total if usage.total else 0.0
        if self.min_free_bytes is not None and usage.free < self.min_free_bytes:
            problems.append(f"{usage.free} bytes free, below {self.min_free_bytes}")
        if self.min_free_percent is not None and free_percent < self.min_free_percent:
            problems.append(f"{free_percent:.1f}% free, below {self.min_free_percent:g}%")
        return CheckResult("fail" if problems else "pass", "; ".join(problems),
                           observed_value=used_percent, observed_unit="percent")

    def _round_trip(self) -> list[str]:
        """Write, read back and remove a small file; what went wrong, if it was not an error."""
        probe = self.path / f".ragtrail-health-{os.getpid()}-{secrets.token_hex(4)}"
        payload = secrets.token_bytes(64)
        # O_EXCL: never follow or clobber something already at the name.
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(payload)
            if probe.read_bytes() != payload:
                return [f"{self.path}: read back different bytes"]
        finally:
            probe.unlink(missing_ok=True)
        return []
