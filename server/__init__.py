"""The RuleRAG web API and web page (FastAPI). See :func:`server.app.create_app` and
:func:`server.serve.serve`; ``python -m server --help`` runs it."""

from server.app import create_app
from server.serve import serve

__all__ = ["create_app", "serve"]
