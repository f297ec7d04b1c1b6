"""``python -m server --index DIR [--rules FILE] [--host H] [--port P] [--workers N]``: the web API with uvicorn."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rulerag.demo import DEMO_INDEX
from rulerag.config import load_settings
from rulerag.errors import RuleRAGError
from server.serve import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m server", description="Serve the RuleRAG web API and web page.")
    parser.add_argument("--index", type=Path, default=DEMO_INDEX, help="index directory (default: the demo index, with the demo rules)")
    parser.add_argument("--rules", type=Path, default=None, help="rule file (.jsonl or .txt)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--config", type=Path, default=None, help="YAML settings file (else $RULERAG_CONFIG)")
    parser.add_argument("--backend", choices=["transformers", "openai", "fixed"], default=None, help="generator backend")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--workers", type=int, default=1, help="worker processes on one port, forked after the index is loaded once (default 1)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config, {"generation": {"backend": args.backend}})
        serve(args.index, args.rules, args.host, args.port, settings=settings, log_level=args.log_level, workers=args.workers)
    except RuleRAGError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
