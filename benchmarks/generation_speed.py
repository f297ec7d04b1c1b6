"""Generation engines side by side: llama.cpp on the GGUF vs transformers on the dequantised copy.

    .venv/bin/python benchmarks/generation_speed.py --bench ~/rulerag-data/ruleqa-i \\
        [--questions 6] [--followrag ../shared/data/followrag/followRAG_ifnq.json] [--followrag-items 3] \\
        [--engines llamacpp,transformers] [--model qwen2.5-coder-0.5b-instruct] [--threads 2] \\
        [--out benchmarks/results/generation_speed]

Same prompts for both engines, each engine in its own process (so peak RSS is its own):

- **prompts**: the RuleQA-I LLM sample's prompts (the runner's seeded 200-question sample, its first
  ``--questions``; hybrid rule-guided retrieval, top 10 documents, the RuleRAG-ICL prompt) and
  FollowRAG prompts (the first ``--followrag-items`` items: passages, question, output instructions);
- **per prompt, cold** (nothing cached): prompt tokens, prefill tokens/s (prompt tokens / time to the
  first new token), ms per new token after the first, greedy answer (``--max-new-tokens`` 32);
- **warm prefix**: the RuleQA prompts again in order on llama.cpp with its per-process key/value
  cache kept: the share of prompt tokens read from the cache and the mean seconds per answer;
- **load**: seconds to load the model (transformers: from its cached dequantised copy); **peak RSS**
  of the process after loading and answering (``VmHWM``; no embedding model loaded yet);
- **warm demo ask**: ``RuleRAG.ask`` on the demo index in a warm process: the demo question a second
  time (its prompt may be cached whole), then a new question (only the fixed prefix is reused);
- **FollowRAG end to end**: seconds per item of generate-verify-refine (at most 2 refinement rounds,
  256 new tokens, as ``rulerag bench followrag``);
- **decode**: one prompt whose answer is long and known (the numbers 1 to 60 in words, 96 new
  tokens at most), for ms per new token; other answers give that figure only when they have at least
  ``MIN_DECODE_TOKENS`` new tokens (RuleQA answers are 2-6 tokens: their time is the prefill's);
- **agreement**: whether both engines' greedy answers (post-processed) are equal, per prompt.

Writes ``OUT.md`` and ``OUT.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
#: a second demo question, asked after the demo question in the same warm process
OTHER_QUESTION = "Which country is Bram Okafor a citizen of?"
#: answers shorter than this give no ms-per-new-token figure
MIN_DECODE_TOKENS = 16


def _rss_mb() -> float:
    """Peak RSS of this process in MB: VmHWM (ru_maxrss would carry over the parent's peak through exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: KiB


# ------------------------------------------------------------------------------ prompt set


def build_prompts(bench: Path | None, n_questions: int, followrag: Path | None, n_items: int, work: Path) -> list[dict]:
    """The prompts both engines answer: ``{"kind", "id", "system", "user", "max_new_tokens"}``."""
    from rulerag.generation import rulerag_prompt, standard_prompt

    prompts: list[dict] = []
    if bench is not None:
        from rulerag.bench.runner import RunConfig, Runner

        runner = Runner(RunConfig(bench=bench, out=work / "ruleqa", retrievers=("hybrid",), modes=("rulerag",), limit=200,
                                  progress=False))
        runner.questions = runner.questions[:n_questions]
        retrieved = runner.retrieve("hybrid", "rulerag")
        by_id = {r.id: r for r in runner.rules}
        for q in runner.questions:
            row = retrieved[q["id"]]
            rules = [by_id[r].text for r in row["rules"] if r in by_id]
            docs = runner.texts(row["docs"][:10])
            p = rulerag_prompt(q["question"], docs, rules) if rules else standard_prompt(q["question"], docs)
            prompts.append({"kind": "ruleqa-i", "id": q["id"], "system": p.system, "user": p.user, "template": p.template})
    # decoding speed needs many new tokens: an answer of a known, long length
    prompts.append({"kind": "decode", "id": "count-to-60", "system": "", "template": "plain", "max_new_tokens": 96,
                    "user": "Write the numbers from one to sixty in words, separated by commas."})
    if followrag is not None:
        from rulerag.checking import load_followrag
        from rulerag.checking.followrag import followrag_prompt_parts

        for item in load_followrag(followrag, limit=n_items):
            question, instructions, documents = followrag_prompt_parts(item)
            p = standard_prompt(question, documents, [instructions] if instructions else [])
            prompts.append({"kind": "followrag", "id": str(item.key), "system": p.system, "user": p.user, "template": p.template})
    return prompts


# ------------------------------------------------------------------------------ one engine (child process)


def _backend(engine: str, model: str, threads: int):
    from rulerag.generation.backends import TransformersBackend
    from rulerag.generation.llamacpp import LlamaCppBackend

    if engine == "llamacpp":
        return LlamaCppBackend(model, threads=threads, context_tokens=4096)
    import torch

    torch.set_num_threads(threads)
    from rulerag.generation.models import resolve_generator

    resolve_generator(model)  # build the dequantised copy first: its one-off cost is not the load time
    return TransformersBackend(model)


def _time_prompt(engine: str, gen, prompt, max_new: int) -> dict:
    """Cold timings of one prompt: time to first token (prefill) and ms per later token."""
    from rulerag.generation import postprocess_answer

    if engine == "llamacpp":
        gen._llm.reset()  # cold: no cached prefix
        t0 = time.perf_counter()
        first, pieces = None, []
        for piece in gen.stream(prompt, max_new_tokens=max_new):
            first = first or time.perf_counter()
            pieces.append(piece)
        total = time.perf_counter() - t0
        raw = "".join(pieces).strip()
        n_prompt, n_new = gen.last_usage["prompt_tokens"], gen.last_usage["completion_tokens"]
        prefill = (first or time.perf_counter()) - t0
    else:
        gen.generate(prompt, max_new_tokens=1)
        prefill = gen.last_usage["seconds"]
        raw = gen.generate(prompt, max_new_tokens=max_new)
        total = gen.last_usage["seconds"]
        n_prompt, n_new = gen.last_usage["prompt_tokens"], gen.last_usage["completion_tokens"]
    return {"prompt_tokens": n_prompt, "new_tokens": n_new, "prefill_s": prefill, "total_s": total,
            "prefill_tok_s": n_prompt / prefill if prefill else None,
            # per-token time only from answers long enough to measure it (a few tokens drown in the prefill's noise)
            "ms_per_token": 1000 * (total - prefill) / (n_new - 1) if n_new >= MIN_DECODE_TOKENS else None,
            "answer": postprocess_answer(raw), "raw": raw}


def worker(engine: str, model: str, threads: int, prompts_file: Path, result_file: Path, max_new: int,
           followrag: Path | None, n_items: int) -> None:
    from rulerag.generation import Prompt

    prompts = json.loads(prompts_file.read_text())
    out: dict = {"engine": engine, "model": model, "threads": threads}
    gen = _backend(engine, model, threads)
    t0 = time.perf_counter()
    gen.load()
    out["load_s"] = time.perf_counter() - t0
    out["rss_after_load_mb"] = _rss_mb()
    as_prompt = [Prompt(p["system"], p["user"], p["template"]) for p in prompts]
    out["prompts"] = [dict(_time_prompt(engine, gen, p, d.get("max_new_tokens", max_new)), kind=d["kind"], id=d["id"])
                      for p, d in zip(as_prompt, prompts)]
    out["peak_rss_mb"] = _rss_mb()
    if engine == "llamacpp":  # the same RuleQA prompts again, in order, with the per-process prefix cache kept
        gen._llm.reset()
        ruleqa = [p for p, d in zip(as_prompt, prompts) if d["kind"] == "ruleqa-i"]
        t0, cached, total = time.perf_counter(), 0, 0
        for p in ruleqa:
            gen.generate(p, max_new_tokens=max_new)
            cached += gen.last_usage["cached_tokens"]
            total += gen.last_usage["prompt_tokens"]
        out["warm_prefix"] = {"prompts": len(ruleqa), "cached_share": cached / total if total else None,
                              "mean_s": (time.perf_counter() - t0) / max(len(ruleqa), 1)}
    out["demo"] = _demo_ask(gen)
    if followrag is not None and n_items:
        out["followrag"] = _followrag(gen, followrag, n_items)
    result_file.write_text(json.dumps(out, indent=2))


def _demo_ask(gen) -> dict:
    from rulerag.demo import DEMO_CORPUS, DEMO_INDEX, DEMO_QUESTION, DEMO_RULES
    from rulerag.config import Settings
    from rulerag.pipeline import RuleRAG
    from rulerag.retrieval.index import build_index

    settings = Settings()
    if not (DEMO_INDEX / "manifest.json").is_file():
        build_index(DEMO_CORPUS, DEMO_INDEX, settings, overwrite=True, progress=False)
    rag = RuleRAG.from_index(DEMO_INDEX, DEMO_RULES, settings=settings, generator=gen)
    rag.ask(DEMO_QUESTION)  # warm: embedding model, index, generator
    t0 = time.perf_counter()
    answer = rag.ask(DEMO_QUESTION)  # the same question again: its whole prompt may be cached
    out = {"answer": answer.answer, "wall_s": time.perf_counter() - t0, **answer.timings}
    other = rag.ask(OTHER_QUESTION)  # a new question: only the prompt's fixed prefix can be reused
    out["other"] = {"question": OTHER_QUESTION, "answer": other.answer, **other.timings}
    return out


def _followrag(gen, data: Path, n_items: int) -> dict:
    from rulerag.checking import load_followrag
    from rulerag.checking.followrag import followrag_prompt_parts
    from rulerag.generation import standard_prompt
    from rulerag.refine import Constraint, verify_and_refine

    times, rounds = [], []
    for item in load_followrag(data, limit=n_items):
        question, instructions, documents = followrag_prompt_parts(item)
        prompt = standard_prompt(question, documents, [instructions] if instructions else [])
        constraints = [Constraint(i, dict(kw)) for i, kw in zip(item.instruction_id_list, item.kwargs)]
        t0 = time.perf_counter()
        result = verify_and_refine(gen, prompt, constraints, rounds=2, max_new_tokens=256, temperature=0.0,
                                   question=question, documents=documents)
        times.append(time.perf_counter() - t0)
        rounds.append(len(result.rounds))
    return {"items": len(times), "mean_s_per_item": sum(times) / len(times), "mean_rounds": sum(rounds) / len(rounds)}


# ------------------------------------------------------------------------------ report


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _fmt(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def report(results: dict[str, dict], prompts: list[dict], args) -> str:
    engines = list(results)
    lines = [
        "# Generation speed: llama.cpp vs transformers",
        "",
        f"Model `{args.model}`, {args.threads} threads, greedy, at most {args.max_new_tokens} new tokens per prompt; "
        f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}. "
        f"Reproduce: `{' '.join(['.venv/bin/python', 'benchmarks/generation_speed.py', *sys.argv[1:]])}`.",
        "",
        "| measure | " + " | ".join(engines) + " |",
        "|---|" + "---|" * len(engines),
    ]

    def row(label: str, fn, spec: str = ".1f") -> None:
        lines.append(f"| {label} | " + " | ".join(_fmt(fn(results[e]), spec) for e in engines) + " |")

    for kind in sorted({p["kind"] for p in prompts}):
        def sel(r, kind=kind):
            return [p for p in r["prompts"] if p["kind"] == kind]

        row(f"{kind}: prompts", lambda r, s=sel: len(s(r)), "d")
        row(f"{kind}: mean prompt tokens", lambda r, s=sel: _mean(p["prompt_tokens"] for p in s(r)), ".0f")
        row(f"{kind}: prefill tokens/s (cold)", lambda r, s=sel: _mean(p["prefill_tok_s"] for p in s(r)))
        row(f"{kind}: ms per new token (answers of {MIN_DECODE_TOKENS}+ tokens)", lambda r, s=sel: _mean(p["ms_per_token"] for p in s(r)))
        row(f"{kind}: mean new tokens", lambda r, s=sel: _mean(p["new_tokens"] for p in s(r)), ".0f")
        row(f"{kind}: mean s per answer (cold)", lambda r, s=sel: _mean(p["total_s"] for p in s(r)), ".2f")
    row("ruleqa-i: mean s per answer, prefix cache kept", lambda r: (r.get("warm_prefix") or {}).get("mean_s"), ".2f")
    row("ruleqa-i: share of prompt tokens from the cache", lambda r: (r.get("warm_prefix") or {}).get("cached_share"), ".2f")
    row("load s", lambda r: r["load_s"], ".2f")
    row("peak RSS MB (model loaded, prompts answered)", lambda r: r["peak_rss_mb"], ".0f")
    row("warm demo ask, same question again: total s", lambda r: r["demo"]["total_s"], ".2f")
    row("warm demo ask, same question again: generation s", lambda r: r["demo"]["generation_s"], ".2f")
    lines.append("| warm demo ask: answer | " + " | ".join(results[e]["demo"]["answer"] for e in engines) + " |")
    row(f"warm ask, new question ({OTHER_QUESTION!r}): total s", lambda r: r["demo"]["other"]["total_s"], ".2f")
    row("warm ask, new question: generation s", lambda r: r["demo"]["other"]["generation_s"], ".2f")
    row("FollowRAG: mean s per item (generate-verify-refine)", lambda r: (r.get("followrag") or {}).get("mean_s_per_item"), ".1f")
    row("FollowRAG: mean rounds per item", lambda r: (r.get("followrag") or {}).get("mean_rounds"), ".2f")
    if len(engines) == 2:
        a, b = (results[e]["prompts"] for e in engines)
        same = sum(x["answer"] == y["answer"] for x, y in zip(a, b))
        lines += ["", f"Greedy answers equal after post-processing: {same} of {len(a)} prompts."]
        ms = [_mean(p["ms_per_token"] for p in results[e]["prompts"]) for e in engines]
        if all(ms):
            lines.append(f"ms per new token (every answer of {MIN_DECODE_TOKENS}+ tokens), {engines[1]} / {engines[0]}: "
                         f"{ms[1] / ms[0]:.1f}x.")
        fr = [(results[e].get("followrag") or {}).get("mean_s_per_item") for e in engines]
        if all(fr):
            lines.append(f"FollowRAG seconds per item, {engines[1]} / {engines[0]}: {fr[1] / fr[0]:.1f}x.")
        lines += ["", "| prompt | " + " | ".join(f"{e} answer" for e in engines) + " |", "|---|" + "---|" * len(engines)]
        for x, y in zip(a, b):
            lines.append(f"| {x['kind']} {x['id']} | {x['answer'][:60]!r} | {y['answer'][:60]!r} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--bench", type=Path, help="RuleQA-I benchmark directory (rulerag bench build ruleqa-i --out DIR)")
    ap.add_argument("--questions", type=int, default=6, help="RuleQA-I prompts (the first of the runner's seeded 200)")
    default_fr = REPO.parent / "shared" / "data" / "followrag" / "followRAG_ifnq.json"
    ap.add_argument("--followrag", type=Path, default=default_fr if default_fr.is_file() else None, help="FollowRAG JSON file")
    ap.add_argument("--followrag-items", type=int, default=3, help="FollowRAG items (prompts and end-to-end runs)")
    ap.add_argument("--engines", default="llamacpp,transformers", help="comma-separated: llamacpp, transformers")
    ap.add_argument("--model", default="qwen2.5-coder-0.5b-instruct", help="embedded model name")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "generation_speed")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--prompts-file", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.model, args.threads, args.prompts_file, args.result_file, args.max_new_tokens,
               args.followrag, args.followrag_items)
        return
    if args.bench is None and args.followrag is None:
        ap.error("give --bench and/or --followrag: there are no prompts to time")
    with tempfile.TemporaryDirectory(prefix="rulerag-genspeed-") as tmp:
        work = Path(tmp)
        prompts = build_prompts(args.bench, args.questions, args.followrag, args.followrag_items, work)
        (work / "prompts.json").write_text(json.dumps(prompts))
        results = {}
        for engine in args.engines.split(","):
            result_file = work / f"{engine}.json"
            cmd = [sys.executable, __file__, "--worker", engine, "--model", args.model, "--threads", str(args.threads),
                   "--prompts-file", str(work / "prompts.json"), "--result-file", str(result_file),
                   "--max-new-tokens", str(args.max_new_tokens), "--followrag-items", str(args.followrag_items)]
            if args.followrag is not None:
                cmd += ["--followrag", str(args.followrag)]
            print(f"running {engine} ...", file=sys.stderr)
            subprocess.run(cmd, check=True)
            results[engine] = json.loads(result_file.read_text())
    from rulerag.io import atomic_file

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out.with_suffix(".json")) as fh:
        json.dump({"results": results, "prompts": [{k: p[k] for k in ("kind", "id")} for p in prompts],
                   "config": {k: str(v) for k, v in vars(args).items() if not k.startswith(("worker", "prompts_", "result_"))}},
                  fh, indent=2)
    with atomic_file(args.out.with_suffix(".md")) as fh:
        fh.write(report(results, prompts, args))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
