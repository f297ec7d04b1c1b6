"""Run the web API with uvicorn: ``serve(index, rules, host, port)`` (``rulerag serve`` calls it).

With ``workers > 1`` uvicorn starts that many worker processes on one listening socket; each
builds the app with :func:`worker_app` from the configuration the parent passes in the
environment (``RULERAG_SERVE_WORKER_CONFIG``), with ``index.mmap`` on, so the FAISS and BM25
arrays are mapped from the index files and the workers share one copy of them in the page cache.
Each response carries ``X-RuleRAG-Worker`` (the worker's process id) so clients and tests can see
which worker answered.
"""

from __future__ import annotations

import ipaddress
import json
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
    ``/readyz`` turns 200 when they are loaded. ``limits``: :class:`~server.config.ServerSettings`
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
        from rulerag.config import load_settings

        shared = (settings or load_settings()).to_dict()
        shared["index"] = {**shared["index"], "mmap": True}  # one copy of the arrays in the page cache, not one per worker
        os.environ[WORKER_CONFIG] = json.dumps({
            "index": str(index), "rules": None if rules is None else str(rules), "settings": shared,
            # keys given by the caller travel to the workers; otherwise each reads $RULERAG_API_KEYS(_FILE) itself
            "api_keys": None if api_keys is None else sorted(keys), "limits": server_settings.model_dump(mode="json"),
        })
        uvicorn.run("server.serve:worker_app", factory=True, workers=workers, host=host, port=port, log_level=log_level,
                    server_header=False, timeout_graceful_shutdown=10)
        return
    app = create_app(index, rules, settings, api_keys=keys, server_settings=server_settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False, timeout_graceful_shutdown=10)


WORKER_CONFIG = "RULERAG_SERVE_WORKER_CONFIG"


def worker_app() -> Any:
    """The app of one worker process (uvicorn's factory with ``--workers``), from the parent's
    configuration in ``$RULERAG_SERVE_WORKER_CONFIG``; every response names the worker."""
    from rulerag.config import load_settings
    from server.app import create_app

    raw = os.environ.get(WORKER_CONFIG)
    if not raw:
        raise ConfigError(f"${WORKER_CONFIG} is not set: worker_app is started by `rulerag serve --workers N`. "
                          "Fix: start the server with rulerag serve")
    config = json.loads(raw)
    app = create_app(config["index"], config["rules"], load_settings(overrides=config["settings"]),
                     api_keys=None if config["api_keys"] is None else set(config["api_keys"]), server_settings=config["limits"])
    pid = str(os.getpid())

    @app.middleware("http")
    async def name_the_worker(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["X-RuleRAG-Worker"] = pid
        return response

    return app
