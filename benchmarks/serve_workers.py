"""Does `rulerag serve --workers N` scale, and do the workers share the index in memory?

    .venv/bin/python benchmarks/serve_workers.py --index ~/rulerag-data/ruleqa-i/index \\
        --rules ~/rulerag-data/ruleqa-i/rules.jsonl --questions ~/rulerag-data/ruleqa-i/questions.jsonl \\
        [--workers 1,2,4] [--clients 1,4,16,64] [--seconds 10]

For each worker count the server runs in its own process group (``python -m server --workers N``,
fixed generator, one compute thread per worker; with N > 1 the workers are forked from a parent
that loaded the index, memory-mapped, and the encoder once), every worker is
waited for (``/readyz`` over new connections until N distinct ``X-RuleRAG-Worker`` ids answer),
then each client count sends rule-guided ``/v1/retrieve`` requests for ``--seconds`` (the load
levels of ``load_api.py``). Reported: requests/s, p50 / p99 latency, errors, and the server's
memory after the run: the sum of its processes' RSS (which counts pages they share once per
process), PSS (shared pages split between the processes that map them: the memory the server
really takes) and USS (pages no other process has). Writes ``--out``.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

import httpx
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from load_api import QuestionStream, Server, load_questions, run_level  # noqa: E402


def memory(proc: psutil.Process) -> dict[str, float]:
    """RSS, PSS and USS summed over the server's process tree, in MiB."""
    total = {"rss": 0, "pss": 0, "uss": 0}
    for p in [proc, *proc.children(recursive=True)]:
        try:
            info = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        total["rss"] += info.rss
        total["pss"] += getattr(info, "pss", info.rss)
        total["uss"] += info.uss
    return {k: round(v / 2**20, 1) for k, v in total.items()}


def wait_for_workers(url: str, workers: int, timeout: float) -> None:
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    with httpx.Client(trust_env=False, timeout=5) as http:
        while len(seen) < workers:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(seen)} of {workers} workers were ready after {timeout}s")
            try:
                r = http.get(f"{url}/readyz", headers={"Connection": "close"})
                if r.status_code == 200:
                    seen.add(r.headers.get("x-rulerag-worker", "single"))
            except httpx.TransportError:
                pass
            time.sleep(0.05)


async def main_async(args: argparse.Namespace) -> dict:
    questions = QuestionStream(load_questions(args.questions))
    rows = []
    for workers in args.workers:
        server = Server(args.index, args.rules, Path(args.log), compute_threads=1, workers=workers)
        try:
            server.wait_ready(args.ready_timeout)
            wait_for_workers(server.url, workers, args.ready_timeout)
            ready = memory(server.ps)
            await run_level(server.url, "retrieve", max(args.clients), 3, 10**6, questions, args.k, "rulerag", 60)  # warm-up
            for clients in args.clients:
                row = await run_level(server.url, "retrieve", clients, args.seconds, 10**6, questions, args.k, "rulerag", 60)
                rows.append({"workers": workers, "clients": clients, **row, "memory_ready_mib": ready, "memory_mib": memory(server.ps)})
                print(f"workers {workers} clients {clients}: {row['rps']} req/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
                      f"errors {row['errors']}, memory {rows[-1]['memory_mib']}", flush=True)
        finally:
            server.stop()
    return {"index": str(args.index), "rows": rows, "seconds_per_level": args.seconds, "k": args.k,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
            "load": os.getloadavg()}


def write_markdown(report: dict, path: Path, command: str) -> None:
    rows = report["rows"]
    best = {w: max(r["rps"] for r in rows if r["workers"] == w) for w in sorted({r["workers"] for r in rows})}
    mem = {w: next(r["memory_mib"] for r in rows if r["workers"] == w and r["clients"] == max(x["clients"] for x in rows)) for w in best}
    one = min(best)
    lines = [
        "# Serving with N worker processes", "",
        f"`{command}` ({report['machine']}; loopback, rule-guided `/v1/retrieve`, k = {report['k']}, fixed generator, one compute "
        f"thread per worker, index files memory-mapped; {report['seconds_per_level']} s per level after a warm-up).", "",
        "| workers | clients | req/s | p50 ms | p99 ms | errors | memory after: RSS sum / PSS sum / USS sum (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        m = r["memory_mib"]
        lines.append(f"| {r['workers']} | {r['clients']} | {r['rps']:.1f} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} | "
                     f"{m['rss']:.0f} / {m['pss']:.0f} / {m['uss']:.0f} |")
    lines += ["", "| workers | best req/s | vs 1 worker | PSS (MiB) | vs 1 worker | RSS sum (MiB) | vs 1 worker |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for w in best:
        lines.append(f"| {w} | {best[w]:.1f} | {best[w] / best[one]:.2f}x | {mem[w]['pss']:.0f} | {mem[w]['pss'] / mem[one]['pss']:.2f}x | "
                     f"{mem[w]['rss']:.0f} | {mem[w]['rss'] / mem[one]['rss']:.2f}x |")
    lines += ["", f"Load average at the end (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in report['load'])}.", ""]
    path.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--rules", type=Path, default=None)
    ap.add_argument("--questions", type=Path, required=True)
    ap.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    ap.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16, 64])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--ready-timeout", type=float, default=300.0)
    ap.add_argument("--log", default="/tmp/rulerag-serve-workers.log")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "serve_workers")
    args = ap.parse_args(argv)
    report = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    command = "python benchmarks/serve_workers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_markdown(report, args.out, command)
    return report


if __name__ == "__main__":
    main()
