"""Reading settings from ``RAGTRAIL_*`` and ``OTEL_*`` variables, under the arguments given.

What ``Settings.from_env`` does before it builds the Settings: each setting's value from its
argument, else from the first of its variables that is set, with the OTel specification's
rules for ``OTEL_*`` values (an unusable one is warned about and ignored) and for the
per-signal exporter variables.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ragtrail._setting_checks import ConfigurationError, shown, validated
from ragtrail._setting_values import SomeSkipped

__all__ = ["read_environment"]

log = logging.getLogger("ragtrail")

# A signal's own setting -> the shared one it specialises (argument precedence, see from_env).
_SHARED_OF = {
    f"otlp_{signal}_{aspect}": f"otlp_{aspect}"
    for signal in ("traces", "metrics")
    for aspect in ("endpoint", "protocol", "headers", "timeout_ms", "compression")}

_IGNORED = object()  # what _read() returns for an OTEL_* value that is ignored


def read_environment(fields: Iterable[dataclasses.Field[Any]], env: Mapping[str, str],
                     overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The values of the settings given as arguments or set in ``env``, and for each value
    read from a variable, that variable's name (for messages about it)."""
    fields = tuple(fields)
    defaults = {f.name: f.default for f in fields}
    values: dict[str, Any] = {}
    variables: dict[str, str] = {}  # setting -> the variable its value came from
    for f in fields:
        if overrides.get(f.name) is not None:  # None means "not given": fall through
            values[f.name] = overrides[f.name]
            continue
        if f.name == "traces_sampler_arg" and not str(values.get(
                "traces_sampler", defaults["traces_sampler"])).endswith("traceidratio"):
            # The specification: each sampler defines its own argument, if any. A cluster-
            # wide ratio beside always_on is not this service's mistake: not read, no warning.
            continue
        shared = _SHARED_OF.get(f.name)
        given = shared and next((name for name in (shared, "otlp_endpoint")
                                 if overrides.get(name) is not None), None)
        for variable in f.metadata["env"]:
            raw = env.get(variable)
            if raw is None or (raw.strip() == "" and f.default is not None):
                continue
            if given:
                # An argument wins over the environment, a signal's own variables too:
                # configure(otlp_endpoint=...) must not send spans where a cluster-wide
                # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT points, nor that collector's
                # headers (its API key) to the one the code chose.
                log.warning("%s is ignored: %s was given as an argument", variable, given)
                break
            value = _read(f, variable, raw)
            if value is not _IGNORED:
                values[f.name], variables[f.name] = value, variable
                break
    attributes = values.get("resource_attributes", {})
    placed = attributes.get("deployment.environment.name",
                            attributes.get("deployment.environment", "")).strip()
    if "environment" not in values and placed:
        # As service.name there names the service: a service reported as production runs
        # with the production defaults (detailed health routes closed without a token, the
        # start-up scan), unless its environment was given another way.
        values["environment"] = placed
    _fit_batch(values, variables, overrides, defaults)
    return values, variables


def _fit_batch(values: dict[str, Any], variables: dict[str, str],
               overrides: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """OTEL_BSP_MAX_EXPORT_BATCH_SIZE larger than the queue is cut to the queue's size with a
    warning: the specification says it "must be less than or equal to" OTEL_BSP_MAX_QUEUE_SIZE,
    and an unusable OTEL_* value is never fatal. (An argument is refused by Settings.)"""
    if overrides.get("export_batch_size") is not None or "export_batch_size" not in variables:
        return
    queue = values.get("export_queue_size", defaults["export_queue_size"])
    batch = values["export_batch_size"]
    if isinstance(queue, int) and batch > queue:
        log.warning("%s=%d is larger than the span export queue (%d); batches of %d are used",
                    variables["export_batch_size"], batch, queue, queue)
        values["export_batch_size"] = queue


def _read(f: dataclasses.Field[Any], variable: str, raw: str) -> Any:
    """The setting's value from one variable. An unusable OTEL_* value is logged and ignored,
    so the default applies: the OTel specification says so for enums and numbers, and these
    variables are often set for every service of a cluster, in every language. ragtrail's own
    RAGTRAIL_* variables are its contract, and fail."""
    try:
        return validated(f, f.metadata["parse"](raw))
    except SomeSkipped as exc:
        log.warning("%s: %s", variable, exc)
        return exc.usable
    except ValueError as exc:
        if not variable.startswith("OTEL_"):
            raise ConfigurationError(
                f"{variable}={shown(f, raw)!r} is not valid for setting {f.name}: {exc}",
                setting=f.name) from None
        log.warning("%s=%r is not valid for setting %s (%s); ignored, the default applies",
                    variable, shown(f, raw), f.name, exc)
        return _IGNORED
