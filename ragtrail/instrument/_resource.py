"""The OpenTelemetry Resource ragtrail exports under when it owns the exporter.

Built from the one ``Settings`` object rather than ``Resource.create()``, which would read
``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES`` again and undo ragtrail's precedence
(argument, then environment, then default).
"""

from __future__ import annotations

import uuid

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.version import __version__ as _sdk_version

from ragtrail._settings import Settings

__all__ = ["build_resource"]


def build_resource(settings: Settings) -> Resource:
    """``service.*``, ``deployment.environment(.name)``, ``telemetry.sdk.*`` and extras.

    A ragtrail setting wins over the same key in ``OTEL_RESOURCE_ATTRIBUTES`` unless it is
    still at its default (as ``OTEL_SERVICE_NAME`` wins over it in the OTel SDK spec). A version
    or environment nobody set is left out rather than exported as "0.0.0" or "development",
    which would mislabel the service and keep a collector from filling them in. Both
    ``deployment.environment.name`` (semantic conventions 1.27+) and the older
    ``deployment.environment`` are set, so backends on either convention group by it.
    """
    extra = settings.resource_attributes
    attributes: dict[str, str] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": _sdk_version,
        "service.instance.id": uuid.uuid4().hex,
        **extra,
        "service.name": _chosen(settings.service_name, "unknown_service",
                                extra.get("service.name")) or "unknown_service",
    }
    version = _chosen(settings.service_version, "0.0.0", extra.get("service.version"))
    if version != "0.0.0":
        attributes["service.version"] = version
    environment = _chosen(settings.environment, "development", extra.get(
        "deployment.environment.name", extra.get("deployment.environment")))
    if environment != "development":  # set (or in the attributes, under either key)
        attributes["deployment.environment.name"] = environment
        attributes["deployment.environment"] = environment
    return Resource(attributes)


def _chosen(setting: str, default: str, from_attributes: str | None) -> str:
    if setting == default and from_attributes is not None:
        return from_attributes
    return setting
