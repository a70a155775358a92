"""Generated query strings, paths, methods and Authorization headers never break respond()."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragtrail.health import FunctionCheck

from ._servers import wait_until
from .conftest import MonitorFactory, ServiceFactory

ROUTES = ["/health", "/livez", "/ready", "/readyz", "/api/health/detailed",
          "/api/health/dependencies", "/api/monitoring"]
QUERIES = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")),
    st.lists(st.sampled_from(["verbose", "exclude=ok", "exclude=", "check=ok", "check=%00",
                              "refresh=1", "refresh=0", "verbose=no", "&&", "=",
                              "check=ok&check=ok"])).map("&".join),
)


@pytest.mark.parametrize("token", [None, "s3cret-token-value"])
def test_any_request_gets_a_well_formed_answer(
        make_monitor: MonitorFactory, make_service: ServiceFactory, token: str | None) -> None:
    """Whatever arrives, the answer is a known status with a parseable body, never an error."""
    service = make_service(FunctionCheck(lambda: True, "ok"), store_check=False,
                           monitor=make_monitor(api_token=token), refresh_min_interval=0.0)
    service.respond("GET", "/ready", b"", {})
    wait_until(lambda: "ok" in service.results)

    @settings(max_examples=200, deadline=None)
    @given(path=st.sampled_from(ROUTES), query=QUERIES,
           method=st.sampled_from(["GET", "HEAD", "POST", "get", "TRACE", ""]),
           authorization=st.one_of(st.none(), st.text(max_size=80),
                                   st.text(max_size=40).map("Bearer {}".format)))
    def answer_is_well_formed(path: str, query: str, method: str,
                              authorization: str | None) -> None:
        headers = {} if authorization is None else {"Authorization": authorization}
        response = service.respond(method, path, query, headers)
        assert response is not None
        assert response.status in {200, 202, 400, 401, 404, 405, 429, 503}
        if response.body and "json" in dict(response.headers)["content-type"]:
            json.loads(response.body)
        if method == "HEAD":
            assert response.body == b""

    answer_is_well_formed()
