"""Run the web API with uvicorn: ``serve(index, rules, host, port)`` (``rulerag serve`` calls it)."""

from __future__ import annotations

import ipaddress
import logging
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
) -> None:
    """Serve ``index`` (with ``rules``) on ``host:port`` until interrupted.

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
    read_manifest(Path(index))  # fail fast on a missing or broken index directory
    server_settings = load_server_settings(limits)
    keys = load_api_keys(api_keys)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not keys and not _is_loopback(host):
        log.warning("serving on %s without API keys: anyone who can reach the port can use the API "
                    "(set RULERAG_API_KEYS or RULERAG_API_KEYS_FILE)", host)
    app = create_app(index, rules, settings, api_keys=keys, server_settings=server_settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False, timeout_graceful_shutdown=10)
