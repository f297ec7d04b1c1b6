"""Bounded load test of the web API on loopback: 1, 10 and 50 concurrent clients against
``/v1/retrieve`` and ``/v1/ask``.

The server runs in its own process (``python -m server``, uvicorn, one worker) with the **fixed**
generator backend, so ``/v1/ask`` measures retrieval + prompt building + the API around a
generator that costs nothing (a real generator takes seconds per answer on a CPU and would only
measure itself). Clients are asyncio + httpx in this process, each sending its next request as soon
as the previous one is answered, for ``--seconds`` per (endpoint, concurrency) level and at most
``--max-requests`` requests per level. Reported per level: requests/s, latency p50/p95/p99/max,
errors (any non-200 or transport error) and the server's RSS before and after.

    .venv/bin/python benchmarks/load_api.py --index /tmp/ruleqa/ruleqa-i/index \\
        --rules /tmp/ruleqa/ruleqa-i/rules.jsonl --questions /tmp/ruleqa/ruleqa-i/questions.jsonl

Writes ``benchmarks/results/load_api.md`` and ``.json``; ``--screenshot`` also saves the web page
after asking the demo question (``benchmarks/results/web_page.png``; needs Playwright and Chromium).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # profile_query's timers

from rulerag.demo import DEMO_INDEX, DEMO_QUESTION, DEMO_RULES  # noqa: E402
from server.config import ServerSettings  # noqa: E402

SERVER_THREADS = ServerSettings.model_fields["compute_threads"].default

RESULTS = ROOT / "benchmarks" / "results"
DEMO_QUESTIONS = [
    DEMO_QUESTION,
    "Where was Alice Marlow born?",
    "Which language does Alice Marlow speak?",
    "Where does Alice Marlow live?",
    "Which company does Bruno Keller work for?",
    "Which country is Dravport located in?",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_questions(path: Path | None, limit: int = 2000) -> list[str]:
    if path is None:
        return DEMO_QUESTIONS
    out = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                q = json.loads(line).get("question")
                if isinstance(q, str) and q.strip():
                    out.append(q)
            if len(out) >= limit:
                break
    if not out:
        raise SystemExit(f"{path}: no 'question' fields")
    return out


def server_rss(proc: psutil.Process) -> int:
    rss = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            rss += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return rss


class Server:
    """``python -m server`` in a subprocess on a free loopback port, fixed generator backend."""

    def __init__(self, index: Path, rules: Path | None, log: Path, compute_threads: int | None = None, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "server", "--index", str(index), "--host", "127.0.0.1", "--port", str(self.port),
               "--backend", "fixed", "--log-level", "warning", "--workers", str(workers)]
        if rules is not None:
            cmd += ["--rules", str(rules)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "RULERAG_API_KEYS": "", "RULERAG_API_KEYS_FILE": "",
               # the load levels need room for 50 queued clients and batch-free single questions
               "RULERAG_SERVER__MAX_PENDING": "256"}
        if compute_threads is not None:
            env["RULERAG_SERVER__COMPUTE_THREADS"] = str(compute_threads)
        self.log = log.open("wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)

    def wait_ready(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False, timeout=5) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise SystemExit(f"the server exited with {self.proc.returncode}; see {self.log.name}")
                try:
                    r = http.get(f"{self.url}/readyz")
                    if r.status_code == 200:
                        return r.json()
                    if r.json().get("error", {}).get("code") == "load_failed":
                        raise SystemExit(f"the server failed to load; see {self.log.name}")
                except httpx.TransportError:
                    pass
                time.sleep(0.25)
        raise SystemExit(f"the server was not ready after {timeout}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


class QuestionStream:
    """Questions in turn. Unless ``repeat``, every text is new: after each pass over the list the
    questions get more leading/trailing spaces. Tokenisers, BM25 and rule matching ignore the
    spaces (the work is the same) but the searcher's query-embedding cache, keyed on the exact
    text, never hits, so the numbers are those of unseen questions."""

    def __init__(self, questions: list[str], repeat: bool = False) -> None:
        self.questions = questions
        self.repeat = repeat
        self.n = 0

    def next(self) -> str:
        q = self.questions[self.n % len(self.questions)]
        rnd = self.n // len(self.questions)
        self.n += 1
        if self.repeat or rnd == 0:
            return q
        return " " * (rnd % 10) + q + " " * (rnd // 10 + 1)


def body_for(endpoint: str, question: str, k: int, mode: str) -> dict:
    return {"question": question, "k": k, "mode": mode}


async def run_level(url: str, endpoint: str, concurrency: int, seconds: float, max_requests: int, questions: QuestionStream,
                    k: int, mode: str, timeout: float) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=timeout, limits=limits) as http:
        async def client(i: int) -> None:
            nonlocal sent
            while time.perf_counter() < deadline and sent < max_requests:
                sent += 1
                q = questions.next()
                t0 = time.perf_counter()
                try:
                    r = await http.post(f"/v1/{endpoint}", json=body_for(endpoint, q, k, mode))
                    ok = r.status_code == 200
                    key = None if ok else f"{r.status_code} {r.json().get('error', {}).get('code', '?') if r.headers.get('content-type', '').startswith('application/json') else ''}".strip()
                except httpx.HTTPError as exc:
                    ok, key = False, type(exc).__name__
                dt = time.perf_counter() - t0
                if ok:
                    latencies.append(dt)
                else:
                    errors[key] = errors.get(key, 0) + 1

        t_start = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - t_start

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        ordered = sorted(latencies)
        return round(1000 * ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))], 2)

    return {
        "endpoint": f"/v1/{endpoint}",
        "mode": mode,
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "requests": len(latencies) + sum(errors.values()),
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "rps": round(len(latencies) / elapsed, 2) if elapsed else 0.0,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "max_ms": round(1000 * max(latencies), 2) if latencies else None,
        "mean_ms": round(1000 * statistics.fmean(latencies), 2) if latencies else None,
    }


def stage_profile(index: Path, rules: Path | None, questions: QuestionStream, n: int = 30, threads: int | None = None) -> dict:
    """Where one rulerag-mode retrieval spends its time, in this process (the server is stopped),
    with ``benchmarks/profile_query.py``'s exclusive per-stage timers: mean milliseconds per
    question over ``n`` new questions, and the same questions in standard mode."""
    import faiss
    import torch

    from profile_query import STAGES, StageTimer, instrument, profile, summarise
    from rulerag.config import load_settings
    from rulerag.pipeline import RuleRAG

    if threads:
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
    rag = RuleRAG.from_index(index, rules, settings=load_settings(overrides={"generation": {"backend": "fixed"}}))
    rag.retrieve_many(["warm up", "Which country is Alice Marlow a citizen of?"])
    timer = StageTimer()
    instrument(rag, timer)
    rows = [{"question": questions.next()} for _ in range(n)]
    summary = summarise(profile(rag, timer, rows, structured=False, k=5))
    out = {"queries_per_question": summary["queries_per_question"], "threads": threads}
    for stage, row in zip(STAGES, summary["stages"]):
        out[stage.replace(" / ", "_").replace(" ", "_").lower() + "_ms"] = row["mean_ms"]
    out["retrieve_total_ms"] = summary["retrieval_mean_ms"]
    out["retrieve_cpu_ms"] = summary["retrieval_cpu_mean_ms"]
    std = [{"question": questions.next()} for _ in range(n)]
    t0 = time.perf_counter()
    for row in std:
        rag.retrieve(row["question"], k=5, mode="standard")
    out["retrieve_standard_ms"] = round(1000 * (time.perf_counter() - t0) / n, 2)
    return out


class CpuMeter:
    """CPU seconds used by the server, by this client process and by everything else on the
    machine (system busy time minus the two), to show whether other jobs shared the cores."""

    def __init__(self, server: psutil.Process) -> None:
        self.server = server
        self.me = psutil.Process()

    def _server_cpu(self) -> float:
        total = 0.0
        for p in [self.server, *self.server.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def sample(self) -> tuple[float, float, float]:
        sys_t = psutil.cpu_times()
        busy = sum(sys_t) - sys_t.idle - getattr(sys_t, "iowait", 0.0)
        me = self.me.cpu_times()
        return busy, self._server_cpu(), me.user + me.system

    @staticmethod
    def delta(a: tuple[float, float, float], b: tuple[float, float, float], seconds: float) -> dict:
        busy, server, client = (y - x for x, y in zip(a, b))
        return {"server_cores": round(server / seconds, 2), "client_cores": round(client / seconds, 2),
                "other_cores": round(max(0.0, busy - server - client) / seconds, 2)}


def bench_processes() -> list[str]:
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if "rulerag bench" in cmd or ("rulerag" in cmd and " bench " in cmd):
            found.append(f"{p.info['pid']}: {cmd[:120]}")
    return found


def screenshot(index: Path, rules: Path | None, out: Path) -> str:
    """The web page after asking the demo question (in-process uvicorn, fixed backend)."""
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        return "skipped: the playwright package is not installed"
    exe = os.environ.get("RULERAG_CHROMIUM", "/usr/bin/chromium")
    if not Path(exe).is_file():
        return f"skipped: no Chromium at {exe}"
    from rulerag.config import load_settings
    from server.app import create_app
    from server.testing import ServerThread

    app = create_app(index, rules, load_settings(overrides={"generation": {"backend": "fixed"}}), api_keys=set(),
                     server_settings={"load_in_background": False})
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]
    with ServerThread(app, ready_timeout=300) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=args)
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        page.goto(url + "/")
        page.fill("#question", DEMO_QUESTION)
        page.click("#ask")
        expect(page.locator("#status")).to_have_text("done", timeout=60_000)
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    return str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out)


def write_markdown(report: dict, path: Path) -> None:
    env = report["environment"]
    lines = [
        "# Web API load test",
        "",
        f"`benchmarks/load_api.py` on {env['date']}: {env['cpus']} CPU cores ({env['machine']}), "
        f"index `{env['index']}` ({env['documents']:,} documents, {env['rules']:,} rules), "
        f"{report['settings']['seconds']:g} s per level, k = {report['settings']['k']}, hybrid retriever, questions from `{report['settings']['questions_file'] or 'the demo'}` "
        f"({report['settings']['distinct_questions']:,}) in turn, "
        + ("repeated as they are (the query-embedding cache hits)." if report["settings"]["repeat_questions"] else
           "every request text new (spaces added on each pass, which the tokenisers ignore), so the searcher's "
           "query-embedding cache never hits across requests (within one, a question that name masking leaves "
           "unchanged is encoded once for rule matching and retrieval)."),
        "",
        "Server: `python -m server` (uvicorn, one process) on 127.0.0.1, default limits, no API key, "
        + (f"torch/FAISS threads per operation: {report['settings']['compute_threads']} (`RULERAG_SERVER__COMPUTE_THREADS`). "
           if report["settings"]["compute_threads"] else "torch/FAISS threads: the libraries' defaults (all cores). ")
        + "Warm-up before the levels: 10 sequential requests and a "
        f"{report['settings']['warmup_seconds']:g} s burst at {max(report['settings']['concurrency'])} clients per mode and endpoint. "
        "`/v1/ask` uses the **fixed** generator backend (answers with document [1] at no cost), so it measures "
        "retrieval, prompt building and the API, not a language model. Clients: asyncio + httpx in a second "
        "process on the same cores, each sending its next request when the previous one is answered.",
        "",
        "| endpoint | mode | clients | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | errors | server RSS before → after (MiB) | CPU cores: server / client / other jobs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in report["levels"]:
        lines.append(
            f"| `{row['endpoint']}` | {row['mode']} | {row['concurrency']} | {row['requests']:,} | {row['rps']:.1f} | {row['p50_ms']} | {row['p95_ms']} | "
            f"{row['p99_ms']} | {row['max_ms']} | {row['errors']}{' ' + json.dumps(row['error_kinds']) if row['errors'] else ''} | "
            f"{row['rss_before_mib']:.0f} → {row['rss_after_mib']:.0f} | {row['server_cores']} / {row['client_cores']} / {row['other_cores']} |"
        )
    mem = report["memory"]
    lines += [
        "",
        f"Server RSS: {mem['ready_mib']:.0f} MiB when ready, {mem['after_warmup_mib']:.0f} MiB after warm-up, "
        f"{mem['end_mib']:.0f} MiB at the end ({mem['growth_after_warmup_mib']:+.0f} MiB over "
        f"{sum(r['requests'] for r in report['levels']):,} requests; {mem['steady_growth_mib']:+.0f} MiB over the last "
        f"{mem['steady_requests']:,}). Load time: {env['load_s']} s. Growth early in the run comes from the allocators' "
        "high-water mark under larger batches and from the searcher's query-embedding cache, which is bounded "
        "(50,000 entries, about 1.6 KB each); a leak would keep growing through the later levels.",
        "",
        "Targets (2 cores, ICEWS14 index): `/v1/retrieve` p50 < 50 ms at 1 client; zero errors at 50 clients; flat memory. "
        + report["verdict"],
    ]
    st = report.get("stages")
    if st:
        lines += [
            "",
            f"Where one rule-guided retrieval spends its time (in-process after the run, server stopped, mean of 30 new questions, "
            f"{st['queries_per_question']} queries per question: the question plus one per matched rule; exclusive times as in "
            f"`benchmarks/profile_query.py`): query encoding (masked question for rule matching and the retrieval queries) "
            f"{st['query_encoding_ms']} ms, rule matching {st['rule_matching_ms']} ms, FAISS {st['faiss_ms']} ms, BM25 {st['bm25_ms']} ms, "
            f"fusion {st['fusion_ms']} ms, merge / dedup {st['merge_dedup_ms']} ms, other {st['other_ms']} ms; "
            f"whole `retrieve` {st['retrieve_total_ms']} ms wall, {st['retrieve_cpu_ms']} ms CPU "
            f"(standard mode: {st['retrieve_standard_ms']} ms wall).",
        ]
    busy = [r for r in report["levels"] if r.get("other_cores", 0) > 0.15]
    if busy:
        lines += ["", f"Other jobs used more than 0.15 cores during {len(busy)} of {len(report['levels'])} levels "
                      "(last column): those rows are pessimistic."]
    if env.get("other_jobs"):
        lines += ["", f"Other jobs running during the measurement: {len(env['other_jobs'])} (`rulerag bench`); numbers are pessimistic."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


async def main_async(args: argparse.Namespace) -> dict:
    question_list = load_questions(args.questions)
    questions = QuestionStream(question_list, repeat=args.repeat_questions)
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = Path(args.log)
    server = Server(args.index, args.rules, log, args.compute_threads)
    try:
        t0 = time.perf_counter()
        ready = server.wait_ready(args.ready_timeout)
        load_s = round(time.perf_counter() - t0, 1)
        rss_ready = server_rss(server.ps)
        # warm-up: 10 sequential requests per endpoint and mode, then a short burst at the highest concurrency
        # (allocators reach their high-water mark), so that growth during the levels means a leak
        async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=60) as http:
            for endpoint in args.endpoints:
                for mode in args.modes:
                    for _ in range(10):
                        r = await http.post(f"/v1/{endpoint}", json=body_for(endpoint, questions.next(), args.k, mode))
                        r.raise_for_status()
        warmup = []
        for mode, endpoint in itertools.product(args.modes, args.endpoints):
            warmup.append(await run_level(server.url, endpoint, max(args.concurrency), min(args.warmup_seconds, args.seconds),
                                          args.max_requests, questions, args.k, mode, args.timeout))
        rss_warm = server_rss(server.ps)
        levels = []
        meter = CpuMeter(server.ps)
        for mode, endpoint, c in itertools.product(args.modes, args.endpoints, args.concurrency):
            before = server_rss(server.ps)
            cpu0 = meter.sample()
            row = await run_level(server.url, endpoint, c, args.seconds, args.max_requests, questions, args.k, mode, args.timeout)
            row.update(CpuMeter.delta(cpu0, meter.sample(), row["seconds"]))
            row["rss_before_mib"] = before / 2**20
            row["rss_after_mib"] = server_rss(server.ps) / 2**20
            levels.append(row)
            print(f"{row['endpoint']:14s} {mode:8s} c={c:<3d} {row['requests']:6d} req {row['rps']:8.1f} req/s  p50 {row['p50_ms']} ms  "
                  f"p95 {row['p95_ms']} ms  p99 {row['p99_ms']} ms  errors {row['errors']}  RSS {row['rss_after_mib']:.0f} MiB  "
                  f"cores server {row['server_cores']} client {row['client_cores']} other {row['other_cores']}", flush=True)
        rss_end = server_rss(server.ps)
    finally:
        server.stop()

    retrieve_c1 = next((r for r in levels if r["endpoint"] == "/v1/retrieve" and r["concurrency"] == 1 and r["mode"] == args.modes[0]), None)
    max_c = max(args.concurrency)
    errors_at_max = sum(r["errors"] for r in levels if r["concurrency"] == max_c)
    growth = (rss_end - rss_warm) / 2**20
    tail = levels[len(levels) // 2:]
    steady = tail[-1]["rss_after_mib"] - tail[0]["rss_before_mib"]
    steady_requests = sum(r["requests"] for r in tail)
    verdict = []
    if retrieve_c1 and retrieve_c1["p50_ms"] is not None:
        verdict.append(f"`/v1/retrieve` p50 at 1 client ({args.modes[0]} mode): {retrieve_c1['p50_ms']} ms ({'met' if retrieve_c1['p50_ms'] < 50 else 'NOT met'})")
    verdict.append(f"errors at {max_c} clients: {errors_at_max} ({'met' if errors_at_max == 0 else 'NOT met'})")
    verdict.append(f"server RSS {growth:+.0f} MiB from the end of warm-up to the end; {steady:+.0f} MiB over the last "
                   f"{len(tail)} levels ({steady_requests:,} requests): {'flat' if abs(steady) < 32 else 'NOT flat'}")
    import fastapi
    import uvicorn

    return {
        "environment": {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "fastapi": fastapi.__version__,
            "uvicorn": uvicorn.__version__,
            "index": str(args.index),
            "rules_file": str(args.rules) if args.rules else None,
            "documents": ready["documents"],
            "rules": ready["rules"],
            "load_s": load_s,
            "server_load_s": ready["load_s"],
            "loadavg_at_end": os.getloadavg(),
            "other_jobs": bench_processes(),
        },
        "settings": {"seconds": args.seconds, "warmup_seconds": args.warmup_seconds, "compute_threads": args.compute_threads, "concurrency": args.concurrency, "endpoints": args.endpoints, "k": args.k,
                     "modes": args.modes, "max_requests": args.max_requests, "generator": "fixed",
                     "repeat_questions": args.repeat_questions, "questions_file": str(args.questions) if args.questions else None,
                     "distinct_questions": len(question_list), "requests_sent": questions.n},
        "questions_sample": question_list[:5],
        "levels": levels,
        "warmup_bursts": warmup,
        "memory": {"ready_mib": rss_ready / 2**20, "after_warmup_mib": rss_warm / 2**20, "end_mib": rss_end / 2**20,
                   "growth_after_warmup_mib": growth, "steady_growth_mib": steady, "steady_requests": steady_requests},
        "verdict": "; ".join(verdict) + ".",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=DEMO_INDEX, help="index directory (default: the demo index)")
    parser.add_argument("--rules", type=Path, default=None, help="rule file (default: the demo rules with the demo index)")
    parser.add_argument("--questions", type=Path, default=None, help="JSONL with 'question' fields (default: questions.jsonl next to the index, else demo questions)")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per (endpoint, concurrency) level (default 30)")
    parser.add_argument("--concurrency", default="1,10,50", help="client counts (default 1,10,50)")
    parser.add_argument("--endpoints", default="retrieve,ask", help="endpoints (default retrieve,ask)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--modes", default="rulerag", help="retrieval modes, each a set of levels (default rulerag; e.g. rulerag,standard)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="cap per level (default 200000)")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout in seconds")
    parser.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to wait for the server to load")
    parser.add_argument("--out", type=Path, default=RESULTS / "load_api", help="output path without suffix (.md and .json are written)")
    parser.add_argument("--log", default="/tmp/rulerag_load_api_server.log", help="server log file")
    parser.add_argument("--warmup-seconds", type=float, default=5.0, help="warm-up burst per mode and endpoint at the highest concurrency")
    parser.add_argument("--compute-threads", type=int, default=None,
                        help=f"RULERAG_SERVER__COMPUTE_THREADS for the server (torch/FAISS threads per operation; default: the "
                             f"server's, {SERVER_THREADS}; 0: the libraries' defaults, all cores)")
    parser.add_argument("--repeat-questions", action="store_true",
                        help="send repeated question texts (the searcher's query-embedding cache then hits); default: every text is new")
    parser.add_argument("--no-stages", dest="stages", action="store_false", help="skip the in-process per-stage timing after the run")
    parser.add_argument("--screenshot", action="store_true", help="also save benchmarks/results/web_page.png (Playwright + Chromium)")
    parser.add_argument("--screenshot-only", action="store_true", help="only save the web page screenshot, no load test")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if args.compute_threads is None:
        args.compute_threads = SERVER_THREADS
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if any(m not in ("rulerag", "standard") for m in args.modes):
        parser.error("--modes takes rulerag and/or standard")
    args.endpoints = [e.strip().removeprefix("/v1/") for e in args.endpoints.split(",") if e.strip()]
    if not 0 < args.seconds <= 600 or any(not 1 <= c <= 500 for c in args.concurrency):
        parser.error("--seconds must be in (0, 600] and each concurrency in [1, 500]")
    if args.rules is None and args.index.resolve() == DEMO_INDEX.resolve():
        args.rules = DEMO_RULES
    if args.questions is None and (args.index.parent / "questions.jsonl").is_file():
        args.questions = args.index.parent / "questions.jsonl"
    if args.screenshot_only:
        print(screenshot(DEMO_INDEX, DEMO_RULES, RESULTS / "web_page.png"))
        return
    others = bench_processes()
    if others:
        print(f"note: {len(others)} `rulerag bench` process(es) running; results will be pessimistic", file=sys.stderr)
    report = asyncio.run(main_async(args))
    if args.stages:
        report["stages"] = stage_profile(args.index, args.rules, QuestionStream(load_questions(args.questions)[::-1]),
                                         threads=args.compute_threads or None)
        print("stages (ms per question):", report["stages"])
    if args.screenshot:
        report["screenshot"] = screenshot(DEMO_INDEX, DEMO_RULES, RESULTS / "web_page.png")
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    write_markdown(report, out.with_suffix(".md"))
    print(report["verdict"])
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
