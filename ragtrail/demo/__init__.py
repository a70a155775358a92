"""``ragtrail demo``: an example RAG service, a scripted scenario against it, and a report.

``create_app`` builds the service (also used by ``examples/rag_service``); ``run_demo`` is what
the ``ragtrail demo`` command runs.
"""

from ragtrail.demo._fake_ollama import FakeOllama
from ragtrail.demo._run import DemoError, DemoOptions, run_demo
from ragtrail.demo.pipeline import Pipeline
from ragtrail.demo.service import create_app

__all__ = ["DemoError", "DemoOptions", "FakeOllama", "Pipeline", "create_app", "run_demo"]
