"""Run the web API: ``serve(index, rules, host, port)`` (``rulerag serve`` calls it).

One worker: the app under uvicorn. With ``workers > 1`` the parent loads the retrieval side once
(index with ``index.mmap`` on, rules, encoder, warmed up), then gunicorn's arbiter forks that many
uvicorn workers on one listening socket (``preload_app``): they share the loaded pages
copy-on-write instead of holding one copy each, and each loads only the generator. Each
response carries ``X-RuleRAG-Worker`` (the worker's process id) so clients and tests can see
which worker answered.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path
from typing import Any

from rulerag.config import Settings
from rulerag.errors import ConfigError
from server.config import load_api_keys, load_server_settings

log = logging.getLogger("rulerag.server")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    index: str | Path,
    rules: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    settings: Settings | None = None,
    api_keys: set[str] | None = None,
    limits: dict[str, Any] | None = None,
    log_level: str = "info",
    workers: int = 1,
) -> None:
    """Serve ``index`` (with ``rules``) on ``host:port`` until interrupted, in ``workers`` processes.

    The index manifest is checked before the server starts (a missing or foreign directory fails
    at once with a ``RuleRAGError``); the index and models then load in the background and
    ``/readyz`` turns 200 when they are loaded. With ``workers > 1`` the retrieval side loads
    before the port opens (a loading error stops the server) and each worker then loads the
    generator. ``limits``: :class:`~server.config.ServerSettings`
    fields, over the ``RULERAG_SERVER__*`` environment.
    """
    import uvicorn

    from rulerag.retrieval.index import read_manifest
    from server.app import create_app

    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is out of range. Fix: use a port between 1 and 65535 (0 = any free port)")
    if not 1 <= workers <= 64:
        raise ConfigError(f"--workers {workers} is out of range. Fix: use 1 to 64 (about one per CPU core)")
    read_manifest(Path(index))  # fail fast on a missing or broken index directory
    server_settings = load_server_settings(limits)
    keys = load_api_keys(api_keys)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not keys and not _is_loopback(host):
        log.warning("serving on %s without API keys: anyone who can reach the port can use the API "
                    "(set RULERAG_API_KEYS or RULERAG_API_KEYS_FILE)", host)
    if workers > 1:
        _serve_prefork(index, rules, host, port, settings, keys, server_settings, log_level, workers)
        return
    app = create_app(index, rules, settings, api_keys=keys, server_settings=server_settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False, timeout_graceful_shutdown=10)


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def name_the_worker(app: Any) -> None:
    """Every response of ``app`` carries ``X-RuleRAG-Worker``: the id of the process that answered."""

    @app.middleware("http")
    async def add_worker_header(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["X-RuleRAG-Worker"] = str(os.getpid())
        return response


def _serve_prefork(index: str | Path, rules: str | Path | None, host: str, port: int, settings: Settings | None,
                   keys: set[str], server_settings: Any, log_level: str, workers: int) -> None:
    """Load the retrieval side once, then fork ``workers`` uvicorn workers under gunicorn's arbiter
    (``preload_app``): the encoder weights, rules, documents and index arrays are shared
    copy-on-write (the FAISS and BM25 arrays are memory-mapped too), and each worker loads only
    the generator. The arbiter restarts a worker that dies and stops them all on SIGTERM / SIGINT."""
    import gc

    from gunicorn.app.base import BaseApplication
    from uvicorn_worker import UvicornWorker

    from rulerag.config import load_settings
    from server.app import create_app

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizer's pool does not survive a fork either
    settings = settings or load_settings()
    # index arrays mapped from the files: shared through the page cache
    settings = settings.model_copy(update={"index": settings.index.model_copy(update={"mmap": True})})
    app = create_app(index, rules, settings, api_keys=keys, server_settings=server_settings)
    name_the_worker(app)
    app.state.engine.workers = workers
    app.state.engine.preload()
    gc.freeze()  # the loaded objects stay out of the collector's way, so its passes do not copy their pages

    class Worker(UvicornWorker):
        CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "server_header": False, "timeout_graceful_shutdown": 10}

    class Prefork(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {"bind": [_bind(host, port)], "workers": workers, "worker_class": Worker, "preload_app": True,
                               "loglevel": log_level, "graceful_timeout": 10, "timeout": 120, "proc_name": "rulerag-serve"}.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    Prefork().run()


