"""The report's "Explore further" lines, as the user will paste them."""

from __future__ import annotations

from ragtrail.demo._report import render_explore


def test_the_suggested_serve_run_records_where_this_run_did() -> None:
    """``ragtrail demo --db other.db --data-dir dd`` suggests a ``--serve`` run with the same
    store and data directory, so the other suggested commands see what it records too."""
    lines = list(render_explore(db="other.db", question_id="demo-question-0001",
                                quarantine_dir="dd/quarantine", data_dir="dd",
                                base_url="http://127.0.0.1:8000", api_token="t",
                                serving=False))
    serve, = (line for line in lines if "ragtrail demo --serve" in line)
    assert serve.split("#")[0].split() == ["ragtrail", "demo", "--serve", "--db", "other.db",
                                           "--data-dir", "dd"]
