"""The ``rulerag`` command line (typer). Run ``rulerag --help`` for the commands.

Every command reads settings as defaults < ``--config FILE`` (or ``$RULERAG_CONFIG``) < environment
(``RULERAG_SECTION__KEY``) < flags. User errors print one line ``error: ...`` and exit with 2.
"""

from __future__ import annotations

import os
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import orjson
import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from rulerag.config import BackendKind, FaissIndexType, MergePolicy, Mode, RetrieverKind, Settings, load_settings
from rulerag.demo import DEMO_CORPUS, DEMO_INDEX, DEMO_QUESTION, DEMO_RULES, demo_rules_for
from rulerag.errors import RuleRAGError

app = typer.Typer(
    help="RuleRAG: rule-guided retrieval-augmented question answering.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
index_app = typer.Typer(help="Build and inspect index directories.", no_args_is_help=True)
bench_app = typer.Typer(help="Build RuleQA benchmarks from their source KGs.", no_args_is_help=True)
rules_app = typer.Typer(help="Mine and inspect rules.", no_args_is_help=True)
config_app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)
app.add_typer(index_app, name="index")
app.add_typer(config_app, name="config")
app.add_typer(bench_app, name="bench")
app.add_typer(rules_app, name="rules")
finetune_app = typer.Typer(help="RuleRAG-FT: fine-tune the retriever or the generator on a RuleQA benchmark.", no_args_is_help=True)
app.add_typer(finetune_app, name="finetune")

out = Console()
err = Console(stderr=True)


_state: dict[str, Any] = {"config": None}

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML settings file (else $RULERAG_CONFIG).")]
IndexOpt = Annotated[Path, typer.Option("--index", "-i", help="Index directory built by `rulerag index build` (default: the demo index, with the demo rules).")]
RulesOpt = Annotated[Optional[Path], typer.Option("--rules", "-r", help="Rule file: .jsonl, or text with one rule per line.")]
ModeOpt = Annotated[Optional[Mode], typer.Option("--mode", "-m", help="standard: question only; rulerag: plus one query per matched rule.")]
KOpt = Annotated[Optional[int], typer.Option("--k", "-k", min=1, max=1000, help="Documents to return.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
RetrieverOpt = Annotated[Optional[RetrieverKind], typer.Option("--retriever", help="bm25, dense or hybrid.")]
MergeOpt = Annotated[Optional[MergePolicy], typer.Option("--merge", help="How per-rule lists are merged: rrf or round_robin.")]


@app.callback()
def _main(config: ConfigOpt = None) -> None:
    """RuleRAG: rule-guided retrieval-augmented question answering."""
    _state["config"] = config


def _settings(**sections: dict[str, Any]) -> Settings:
    return load_settings(_state["config"], {k: v for k, v in sections.items() if v})


def _drop_none(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


def _print_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")


# ---------------------------------------------------------------------------- index


class BuildEngine(str, Enum):
    """Where `rulerag index build` runs."""

    local = "local"  #: this process
    ray = "ray"  #: Ray Data: parallel read, actor-pool embedding, global BM25 statistics (rulerag.retrieval.ray_build)


# FAISS options shared by `index build` and `index convert` (build-time parameters; the search-time
# knobs index.ivf_nprobe / index.hnsw_ef_search are read from the settings whenever an index is loaded)
FaissTypeOpt = Annotated[Optional[FaissIndexType], typer.Option("--faiss-type", help="flat (exact), ivf, hnsw or ivfpq (see docs/retrieval.md, Dense index at scale).")]
HnswMOpt = Annotated[Optional[int], typer.Option("--hnsw-m", min=4, help="hnsw: graph neighbours per vector (index.hnsw_m, default 32).")]
IvfNlistOpt = Annotated[Optional[int], typer.Option("--ivf-nlist", min=0, help="ivf, ivfpq: inverted lists (index.ivf_nlist; 0 = 4*sqrt(documents)).")]
IvfTrainSizeOpt = Annotated[Optional[int], typer.Option("--ivf-train-size", min=0, help="ivf, ivfpq: training sample (index.ivf_train_size; 0 = 64 per list).")]
IvfpqMOpt = Annotated[Optional[int], typer.Option("--ivfpq-m", min=0, help="ivfpq: sub-quantizers, must divide the dimension (index.ivfpq_m; 0 = dimension/8).")]
IvfpqNbitsOpt = Annotated[Optional[int], typer.Option("--ivfpq-nbits", min=1, max=16, help="ivfpq: bits per sub-quantizer code (index.ivfpq_nbits, default 8).")]
IvfpqRefineOpt = Annotated[Optional[int], typer.Option("--ivfpq-refine", min=0, max=64, help="ivfpq: keep the exact vectors and re-rank refine*k candidates (index.ivfpq_refine; 0 = off).")]


def _faiss_section(faiss_type: FaissIndexType | None, hnsw_m: int | None, ivf_nlist: int | None, ivf_train_size: int | None,
                   ivfpq_m: int | None, ivfpq_nbits: int | None, ivfpq_refine: int | None) -> dict[str, Any]:
    """The ``index`` settings given by the FAISS options (unset ones left to the configuration)."""
    return _drop_none(faiss_type=faiss_type, hnsw_m=hnsw_m, ivf_nlist=ivf_nlist, ivf_train_size=ivf_train_size,
                      ivfpq_m=ivfpq_m, ivfpq_nbits=ivfpq_nbits, ivfpq_refine=ivfpq_refine)


@index_app.command("build")
def index_build(
    corpus: Annotated[Path, typer.Option("--corpus", help="JSONL corpus: one {\"id\", \"contents\"} object per line.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Index directory to create, e.g. indexes/NAME.")],
    embedding_model: Annotated[Optional[str], typer.Option("--embedding-model", help="sentence-transformers model dir (default: packaged all-MiniLM-L6-v2).")] = None,
    faiss_type: FaissTypeOpt = None,
    hnsw_m: HnswMOpt = None,
    ivf_nlist: IvfNlistOpt = None,
    ivf_train_size: IvfTrainSizeOpt = None,
    ivfpq_m: IvfpqMOpt = None,
    ivfpq_nbits: IvfpqNbitsOpt = None,
    ivfpq_refine: IvfpqRefineOpt = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Embedding batch size.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing index directory (atomically).")] = False,
    no_dense: Annotated[bool, typer.Option("--no-dense", help="BM25 only: skip embedding (fast; dense and hybrid retrieval unavailable).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    engine: Annotated[BuildEngine, typer.Option("--engine", help="local: this process; ray: Ray Data tasks and actors (pip install -e '.[ray]'), same index.")] = BuildEngine.local,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="--engine ray: join this cluster (from `ray start --head`), e.g. 10.0.0.1:6379; default: a local Ray.")] = None,
    num_cpus: Annotated[Optional[int], typer.Option("--num-cpus", min=1, help="--engine ray, local Ray: CPUs to use (default: all of this machine's).")] = None,
    ray_workers: Annotated[Optional[int], typer.Option("--ray-workers", min=1, help="--engine ray: embedding actors, each loads the model once (default: one per CPU).")] = None,
) -> None:
    """Build BM25 + FAISS indexes for a corpus (written to a temp dir, then renamed)."""
    settings = _settings(
        embedding=_drop_none(model=embedding_model, batch_size=batch_size),
        index=_faiss_section(faiss_type, hnsw_m, ivf_nlist, ivf_train_size, ivfpq_m, ivfpq_nbits, ivfpq_refine),
    )
    t0 = time.perf_counter()
    if engine == BuildEngine.ray:
        from rulerag.retrieval.ray_build import build_index_ray

        manifest = build_index_ray(corpus, out_dir, settings, overwrite=overwrite, progress=not quiet, dense=not no_dense,
                                   address=ray_address, num_cpus=num_cpus, workers=ray_workers)
    else:
        from rulerag.errors import ConfigError
        from rulerag.retrieval.index import build_index

        given = [flag for flag, value in (("--ray-address", ray_address), ("--num-cpus", num_cpus), ("--ray-workers", ray_workers)) if value]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply to the Ray build. Fix: add --engine ray, or drop them")
        manifest = build_index(corpus, out_dir, settings, overwrite=overwrite, progress=not quiet, dense=not no_dense)
    dt = time.perf_counter() - t0
    err.print(
        f"built {out_dir}: {manifest.num_docs} documents in {dt:.1f}s ({manifest.num_docs / dt:.0f} docs/s); "
        + ", ".join(f"{k} {v:.1f}s" for k, v in manifest.timings.items())
    )


@index_app.command("convert")
def index_convert(
    index: Annotated[Path, typer.Option("--index", "-i", help="Source index directory (from `rulerag index build` or `index convert`).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Index directory to create, e.g. indexes/NAME-hnsw (not the source).")],
    faiss_type: FaissTypeOpt = None,
    hnsw_m: HnswMOpt = None,
    ivf_nlist: IvfNlistOpt = None,
    ivf_train_size: IvfTrainSizeOpt = None,
    ivfpq_m: IvfpqMOpt = None,
    ivfpq_nbits: IvfpqNbitsOpt = None,
    ivfpq_refine: IvfpqRefineOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out directory (atomically).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Change an index's FAISS type (or its parameters) without re-embedding the corpus.

    The vectors stored in the source's FAISS index go into a new one of --faiss-type (default: the configured index.faiss_type); documents, BM25 files and the embedding model record are copied unchanged. The new directory is written to a temporary directory, then renamed.

    Refused: BM25-only sources, and ivfpq sources built without --ivfpq-refine (they keep only lossy codes); rebuild those from the corpus with `rulerag index build --faiss-type ...`.

    Example: rulerag index convert --index indexes/ruleqa-i --out indexes/ruleqa-i-hnsw --faiss-type hnsw
    """
    from rulerag.retrieval.index import convert_index

    settings = _settings(index=_faiss_section(faiss_type, hnsw_m, ivf_nlist, ivf_train_size, ivfpq_m, ivfpq_nbits, ivfpq_refine))
    t0 = time.perf_counter()
    manifest = convert_index(index, out_dir, settings, overwrite=overwrite, progress=not quiet)
    source_type = (manifest.converted_from or {}).get("faiss_type")
    err.print(
        f"converted {index} ({source_type}) -> {out_dir}: {manifest.num_docs} documents, {manifest.faiss_type}, "
        f"{time.perf_counter() - t0:.1f}s (" + ", ".join(f"{k} {v:.1f}s" for k, v in manifest.timings.items()) + ")",
        highlight=False, soft_wrap=True,
    )


def _print_update(verb: str, path: Path, manifest, t0: float) -> None:
    last = manifest.updates[-1]
    err.print(f"{verb} {path}: +{last['added']} -{last['removed']} documents, {manifest.num_docs} now, "
              f"{time.perf_counter() - t0:.1f}s (" + ", ".join(f"{k} {v:.2f}s" for k, v in last["timings"].items()) + ")",
              highlight=False, soft_wrap=True)


@index_app.command("add")
def index_add(
    index: Annotated[Path, typer.Option("--index", "-i", help="Index directory to grow (from `rulerag index build`).")],
    corpus: Annotated[Path, typer.Option("--corpus", help="JSONL of the new documents: one {\"id\", \"contents\"} object per line, ids not yet in the index.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Add documents to an index in place: only they are embedded (with the index's model), BM25 is rebuilt, retrieval then equals a fresh build.

    Ids already in the index, or given twice, are refused with their list and nothing changes. The updated index is written next to the old one and swapped in atomically: a kill leaves the old index whole.

    Example: rulerag index add --index indexes/mine --corpus new_docs.jsonl
    """
    from rulerag.corpus import read_corpus
    from rulerag.retrieval.update import update_index

    t0 = time.perf_counter()
    manifest = update_index(index, add=read_corpus(corpus), settings=_settings(), progress=not quiet)
    _print_update("added to", index, manifest, t0)


@index_app.command("remove")
def index_remove(
    index: Annotated[Path, typer.Option("--index", "-i", help="Index directory to shrink.")],
    ids: Annotated[Path, typer.Option("--ids", help="Text file of document ids to remove, one per line (blank lines and # comments skipped).")],
) -> None:
    """Remove documents from an index in place, by id (no re-embedding; BM25 is rebuilt, retrieval then equals a fresh build).

    Ids the index does not hold are refused with their list and nothing changes; so is removing every document. Written next to the old index and swapped in atomically.

    Example: rulerag index remove --index indexes/mine --ids old_ids.txt
    """
    from rulerag.errors import ConfigError
    from rulerag.retrieval.update import update_index

    if not ids.is_file():
        raise ConfigError(f"--ids {ids}: no such file. Fix: write the ids to remove one per line in a text file")
    wanted = [s for line in ids.read_text(encoding="utf-8").splitlines() if (s := line.strip()) and not s.startswith("#")]
    t0 = time.perf_counter()
    manifest = update_index(index, remove=set(wanted), settings=_settings())
    _print_update("removed from", index, manifest, t0)


@index_app.command("info")
def index_info(path: Annotated[Path, typer.Argument(help="Index directory.")], as_json: JsonOpt = False) -> None:
    """Show an index's manifest (model, dimension, corpus checksum, counts, versions)."""
    from rulerag.retrieval.index import read_manifest

    manifest = read_manifest(path)
    if as_json:
        _print_json(manifest.model_dump(mode="json"))
        return
    table = Table(title=str(path), show_header=False)
    for key, value in manifest.summary().items():
        table.add_row(key, str(value))
    table.add_row("timings (s)", ", ".join(f"{k} {v}" for k, v in manifest.timings.items()))
    table.add_row("libraries", ", ".join(f"{k} {v}" for k, v in manifest.libraries.items()))
    out.print(table)


# ---------------------------------------------------------------------------- rules / bench

KgOpt = Annotated[
    Optional[Path],
    typer.Option("--kg", help="KG folder (icews14, yago, wiki, fb15k-237, nell-995 layout) or a TSV facts file; default ../shared/data/kg/<dataset>."),
]


def _mine_config(min_support: int | None, min_confidence: float | None, min_head_coverage: float | None, max_length: int | None, max_rules_per_head: int | None):
    from rulerag.rules.mine import MineConfig

    return MineConfig(**_drop_none(min_support=min_support, min_confidence=min_confidence, min_head_coverage=min_head_coverage,
                                   max_length=max_length, max_rules_per_head=max_rules_per_head))


MinSupportOpt = Annotated[Optional[int], typer.Option("--min-support", min=1, help="Minimum support (default from MineConfig).")]
MinConfOpt = Annotated[Optional[float], typer.Option("--min-confidence", min=0, max=1, help="Minimum standard confidence.")]
MinHcOpt = Annotated[Optional[float], typer.Option("--min-head-coverage", min=0, max=1, help="Minimum head coverage.")]
MaxLenOpt = Annotated[Optional[int], typer.Option("--max-length", min=1, max=2, help="Longest rule body (1 or 2).")]
MaxPerHeadOpt = Annotated[Optional[int], typer.Option("--max-rules-per-head", min=1, help="Keep the best N rules per head relation.")]


@rules_app.command("mine")
def rules_mine(
    out_file: Annotated[Path, typer.Option("--out", help="Rule file to write (.jsonl), e.g. rules/NAME.jsonl.")],
    kg: KgOpt = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Dataset layout of --kg (default: the folder's name).")] = None,
    splits: Annotated[str, typer.Option("--splits", help="Splits to mine from, comma-separated (never include test for benchmarks).")] = "train,valid",
    min_support: MinSupportOpt = None,
    min_confidence: MinConfOpt = None,
    min_head_coverage: MinHcOpt = None,
    max_length: MaxLenOpt = None,
    max_rules_per_head: MaxPerHeadOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Mine closed path rules (AMIE-style static, TLogic-style temporal) from a KG."""
    from rulerag.errors import ConfigError
    from rulerag.kg.loaders import load_facts_file, load_kg
    from rulerag.rules.mine import mine_to_file

    if kg is not None and kg.is_file():
        table = load_facts_file(kg)
    else:
        if kg is None and dataset is None:
            raise ConfigError("give --kg PATH (a KG folder or a TSV facts file) or --dataset NAME")
        data = load_kg(dataset or kg.name, kg)
        parts = [p.strip() for p in splits.split(",") if p.strip()]
        bad = [p for p in parts if p not in ("train", "valid", "test")]
        if bad or not parts:
            raise ConfigError(f"unknown split(s) {bad or parts}. Fix: use a comma-separated subset of train,valid,test")
        table = getattr(data, parts[0])
        for p in parts[1:]:
            table = table.concat(getattr(data, p))
    t0 = time.perf_counter()
    n = mine_to_file(table, out_file, _mine_config(min_support, min_confidence, min_head_coverage, max_length, max_rules_per_head), progress=not quiet)
    err.print(f"mined {n} rules from {len(table):,} facts in {time.perf_counter() - t0:.1f}s -> {out_file}")


@bench_app.command("build")
def bench_build(
    benchmark: Annotated[Optional[str], typer.Argument(help="ruleqa-i, ruleqa-y, ruleqa-w, ruleqa-f or ruleqa-n; omit it to build from your own KG with --kg.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Benchmark directory to create (keep it outside git).")] = ...,  # type: ignore[assignment]
    kg: Annotated[Optional[Path], typer.Option("--kg", help="With a preset: its KG folder (default ../shared/data/kg/<dataset>). Without: your own KG, a folder of train/valid/test files or one facts file (subject<TAB>relation<TAB>object[<TAB>time]; see docs/benchmarks.md).")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Your own KG: the benchmark's name, in its stats and every id (default: the --kg folder's or file's name).")] = None,
    temporal: Annotated[Optional[bool], typer.Option("--temporal/--static", help="Your own KG: require a time column (4 columns) or none (3); default: detect from the first fact.")] = None,
    names: Annotated[Optional[Path], typer.Option("--names", help="Your own KG: an id<TAB>name file naming opaque entity and relation ids.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed (and the shuffle splitting one static facts file): same seed, same bytes.")] = 0,
    sample: Annotated[str, typer.Option("--sample", help="balanced (popular/long-tail halves, the paper's) or uniform.")] = "balanced",
    num_questions: Annotated[Optional[int], typer.Option("--questions", min=1, help="Test questions (default: the paper's size for a preset, 1000 for your own KG).")] = None,
    min_support: MinSupportOpt = None,
    min_confidence: MinConfOpt = None,
    min_head_coverage: MinHcOpt = None,
    max_length: MaxLenOpt = None,
    max_rules_per_head: MaxPerHeadOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing directory (atomically).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Build a benchmark: corpus, questions, mined rules, fine-tuning splits, stats.

    A RuleQA preset rebuilds one of the paper's five sets from its source KG. Without a preset, --kg is your own KG (static or temporal, names or opaque ids with an optional --names map): it is split if it is one file, rules are mined from its train and valid facts, and the questions come from its test facts, exactly as for the presets.

    Example: rulerag bench build --kg my_facts.tsv --name my-kg --out ~/rulerag-data/my-kg
    """
    from rulerag.bench.ruleqa import BENCHMARKS, BuildConfig, build_benchmark
    from rulerag.errors import ConfigError

    own = [flag for flag, value in (("--name", name), ("--names", names), ("--temporal/--static", temporal)) if value is not None]
    if benchmark is not None:
        key = benchmark.lower()
        if key not in BENCHMARKS:
            raise ConfigError(f"unknown benchmark {benchmark!r}. Fix: use one of {', '.join(BENCHMARKS)}, or omit it and pass "
                              "your own KG with --kg")
        if own:
            raise ConfigError(f"{', '.join(own)} only apply to your own KG. Fix: drop {benchmark}, or drop {', '.join(own)}")
        from rulerag.kg.loaders import load_kg

        dataset = load_kg(BENCHMARKS[key][0], kg)
    elif kg is None:
        raise ConfigError(f"nothing to build from. Fix: name a preset ({', '.join(BENCHMARKS)}) or pass your own KG with --kg")
    else:
        from rulerag.kg.custom import load_custom_kg

        dataset = load_custom_kg(kg, name=name, temporal=temporal, names=names, seed=seed)
        key = dataset.name.lower()
    config = BuildConfig(key, seed=seed, sample=sample, num_questions=num_questions,
                         mine=_mine_config(min_support, min_confidence, min_head_coverage, max_length, max_rules_per_head))
    t0 = time.perf_counter()
    stats = build_benchmark(dataset, out_dir, config, overwrite=overwrite, progress=not quiet)
    err.print(
        f"built {out_dir} in {time.perf_counter() - t0:.1f}s: {stats['documents']:,} documents, {stats['questions']:,} questions, "
        f"{stats['rules']:,} rules; {stats['share_with_rule']:.1%} of questions have a rule, "
        f"{stats['share_answer_in_corpus']:.1%} have their answer in the corpus"
    )


def _print_results(out_dir: Path, results: dict[str, Any], what: str) -> None:
    """Show a benchmark's results.md, then the files written (plots only when made) on stderr."""
    out.print((out_dir / "results.md").read_text())
    written = ", ".join(str(out_dir / name) for name in ["results.json", "results.md", *results["plots"]])
    err.print(f"wrote {written} ({what})", markup=False, soft_wrap=True)
    if results.get("plots_skipped"):
        err.print(f"plots skipped: {results['plots_skipped']}", style="yellow", markup=False, soft_wrap=True)


@bench_app.command("run")
def bench_run(
    bench: Annotated[Path, typer.Option("--bench", help="Benchmark directory from `rulerag bench build`.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Results directory, e.g. benchmarks/results/NAME.")],
    retrievers: Annotated[str, typer.Option("--retrievers", help="Comma-separated: bm25, dense, hybrid.")] = "bm25,dense,hybrid",
    modes: Annotated[str, typer.Option("--modes", help="Comma-separated: standard, rulerag.")] = "standard,rulerag",
    answerers: Annotated[str, typer.Option("--answerers", help="Comma-separated: none, reasoner, llm, llm+reasoner, llm+paths, llm-score.")] = "none",
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="A seeded sample of N questions.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the --limit sample.")] = 0,
    answer_k: Annotated[int, typer.Option("--answer-k", min=1, help="Documents given to the reasoner / generator.")] = 10,
    index: Annotated[Optional[Path], typer.Option("--index", help="Index to use (default: built once into BENCH/index).")] = None,
    merge: MergeOpt = None,
    dedup: Annotated[Optional[str], typer.Option("--dedup", help="none, fact or pair.")] = None,
    rule_query: Annotated[Optional[str], typer.Option("--rule-query", help="body, rule or rewrite.")] = None,
    max_rules: Annotated[Optional[int], typer.Option("--max-rules", min=0, help="Rules per question.")] = None,
    backend: Annotated[Optional[BackendKind], typer.Option("--backend", help="Generator backend for llm answerers.")] = None,
    score_weight: Annotated[float, typer.Option("--score-weight", help="llm-score: reasoner score + W * LLM score (fit W with benchmarks/tune_generator.py).")] = 1.0,
    score_top: Annotated[int, typer.Option("--score-top", min=1, help="llm-score: reasoner candidates the LLM scores.")] = 5,
    score_norm: Annotated[str, typer.Option("--score-norm", help="llm-score: LLM score = softmax (probability among the candidates) or logprob.")] = "softmax",
    grounded_k: Annotated[int, typer.Option("--grounded-k", min=0, help="llm+paths, llm-score: retrieved documents in the prompt besides the paths' evidence (0 = evidence only: shortest prompt).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Score retrieval (Recall@k) and answers (EM, entity EM, F1) on a RuleQA benchmark; resumable."""
    from rulerag.bench.runner import RunConfig, run_benchmark

    settings = _settings(
        retrieval=_drop_none(merge=merge, dedup=dedup, rule_query=rule_query, max_rules=max_rules),
        generation=_drop_none(backend=backend),
    )
    split = lambda text: [x.strip() for x in text.split(",") if x.strip()]  # noqa: E731
    config = RunConfig(bench=bench, out=out_dir, retrievers=split(retrievers), modes=split(modes), answerers=split(answerers),
                       limit=limit, seed=seed, answer_k=answer_k, index=index, settings=settings, progress=not quiet,
                       score_weight=score_weight, score_top=score_top, score_norm=score_norm, grounded_k=grounded_k)
    results = run_benchmark(config)
    _print_results(out_dir, results, f"{results['questions']} questions")


@bench_app.command("followrag")
def bench_followrag(
    data: Annotated[Path, typer.Option("--data", help="A FollowRAG-format JSON array or JSONL file, e.g. ../shared/data/followrag/followRAG_ifnq.json. Malformed items are skipped and listed.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Results directory: answers/ (resumable answer files), results.json, results.md, per_family.png.")] = Path("benchmarks/results/followrag"),
    setups: Annotated[str, typer.Option("--settings", help="Comma-separated: plain (instructions inside the question), constraint (instructions in their own prompt section), refine (the constraint answer repaired by code, then the model re-asked).")] = "plain,constraint,refine",
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N records of the file.")] = None,
    report: Annotated[bool, typer.Option("--report", help="Build the tables from the answer files already written; generate nothing.")] = False,
    refine_rounds: Annotated[int, typer.Option("--refine-rounds", min=0, max=10, help="refine: at most N model re-asks after the repairs by code.")] = 2,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="Answer length limit per generation.")] = 256,
    backend: Annotated[Optional[BackendKind], typer.Option("--backend", help="llamacpp (default: the GGUF on llama.cpp), transformers (LoRA adapters), openai or fixed.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Embedded model name, model dir or .gguf file.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """FollowRAG: answer each item in up to three settings (resumable: a rerun skips answered items) and report
    instruction following (IFEval strict/loose), answer accuracy, cost, a paired refine-vs-constraint test and the
    pass rate per instruction type."""
    from rulerag.bench.followrag_report import run_followrag

    settings = _settings(generation=_drop_none(backend=backend, model=model))
    results = run_followrag(data, out_dir, settings=settings, setups=setups, limit=limit, refine_rounds=refine_rounds,
                            max_new_tokens=max_new_tokens, progress=not quiet, generate=not report)
    _print_results(out_dir, results, f"{results['items']} items")
    if results["skipped_count"]:
        err.print(f"{results['skipped_count']} malformed item(s) skipped; each is listed in results.json", style="yellow")


# ---------------------------------------------------------------------------- finetune

BenchOpt = Annotated[Path, typer.Option("--bench", help="Benchmark directory from `rulerag bench build` (its finetune_*.jsonl and corpus.jsonl).")]
FtOutOpt = Annotated[Path, typer.Option("--out", help="Model directory to create, e.g. models/NAME (written to a temp dir, then renamed).")]
FtSeedOpt = Annotated[int, typer.Option("--seed", help="Seed of sampling, the held-out split, batches and initialisation.")]
FtLimitOpt = Annotated[Optional[int], typer.Option("--limit", min=1, help="Train on a seeded sample of about N examples (whole questions).")]
FtOverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out directory (atomically).")]
FtThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads while training (1 is often fastest on a busy machine).")]


@finetune_app.command("retriever")
def finetune_retriever(
    bench: BenchOpt,
    out_dir: FtOutOpt,
    base: Annotated[str, typer.Option("--base", help="Encoder to start from: the packaged all-MiniLM-L6-v2 or a sentence-transformers directory.")] = "all-MiniLM-L6-v2",
    no_rules: Annotated[bool, typer.Option("--no-rules", help="Input = the question only (the paper's SSFT ablation), not question + rule.")] = False,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training pairs (early stopping may end sooner).")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2, help="Pairs per batch; every other row's documents are in-batch negatives.")] = 32,
    hard_negatives: Annotated[int, typer.Option("--hard-negatives", min=0, help="BM25 hard negatives per pair (never containing the answer).")] = 1,
    limit: FtLimitOpt = None,
    seed: FtSeedOpt = 0,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="AdamW learning rate (linear warm-up and decay).")] = 5e-5,
    max_seq_length: Annotated[int, typer.Option("--max-seq-length", min=8, help="Token limit of inputs while training.")] = 128,
    eval_share: Annotated[float, typer.Option("--eval-share", min=0.0, max=0.9, help="Share of questions held out for the per-epoch evaluation.")] = 0.1,
    eval_pool: Annotated[int, typer.Option("--eval-pool", min=10, help="Candidate documents of the held-out Recall@k.")] = 2000,
    patience: Annotated[int, typer.Option("--patience", min=0, help="Stop after N epochs without held-out improvement (0: never early).")] = 1,
    threads: FtThreadsOpt = None,
    overwrite: FtOverwriteOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Fine-tune the dense retriever on question + rule -> supporting document (RuleRAG-FT)."""
    from rulerag.finetune.retriever import RetrieverConfig, train_retriever

    cfg = RetrieverConfig(bench=bench, out=out_dir, base=base, with_rules=not no_rules, epochs=epochs, batch_size=batch_size,
                          hard_negatives=hard_negatives, limit=limit, seed=seed, lr=lr, max_seq_length=max_seq_length,
                          eval_share=eval_share, eval_pool=eval_pool, patience=patience, threads=threads, overwrite=overwrite,
                          progress=not quiet)
    result = train_retriever(cfg)
    metric = cfg.metric
    base_score, best_score = result.baseline.get(metric), result.best.get(metric)
    scores = "no held-out slice"
    if best_score is not None:
        # the tie-break (MRR@10) is shown too, or "0.964 -> 0.964 (epoch 1)" looks like nothing was learned
        mrr = f", mrr@10 {result.baseline.get('mrr@10', 0.0):.3f} -> {result.best.get('mrr@10', 0.0):.3f}" if metric != "mrr@10" else ""
        scores = f"held-out {metric} {base_score:.3f} -> {best_score:.3f}{mrr} (epoch {result.best_epoch})"
    err.print(f"saved {out_dir} in {result.total_seconds:.0f}s (training {result.train_seconds:.0f}s); {scores}")
    if result.best_epoch == 0 and best_score is not None:
        err.print("warning: no epoch beat the base model on the held-out slice; the saved weights are the base model's", style="yellow")
    err.print(f"next: rulerag index build --corpus {bench}/corpus.jsonl --embedding-model {out_dir} --out indexes/{out_dir.name}")


@finetune_app.command("generator")
def finetune_generator(
    bench: BenchOpt,
    out_dir: FtOutOpt,
    base: Annotated[str, typer.Option("--base", help="Embedded generator name or a transformers model directory.")] = "qwen2.5-coder-0.5b-instruct",
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training examples.")] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Examples per forward pass.")] = 2,
    grad_accum: Annotated[int, typer.Option("--grad-accum", min=1, help="Forward passes per optimiser step.")] = 4,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="AdamW learning rate of the LoRA weights.")] = 2e-4,
    lora_r: Annotated[int, typer.Option("--lora-r", min=1, help="LoRA rank.")] = 8,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha", min=1, help="LoRA scaling numerator (alpha / r).")] = 16,
    max_length: Annotated[int, typer.Option("--max-length", min=16, help="Token limit per example (prompts are cut from the left).")] = 1024,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Stop after N optimiser steps in all (a smoke run).")] = None,
    limit: FtLimitOpt = None,
    eval_share: Annotated[float, typer.Option("--eval-share", min=0.0, max=0.9, help="Share of examples held out.")] = 0.1,
    patience: Annotated[int, typer.Option("--patience", min=0, help="Stop after N epochs without a lower held-out loss (0: never early).")] = 1,
    seed: FtSeedOpt = 0,
    threads: FtThreadsOpt = None,
    overwrite: FtOverwriteOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """LoRA-fine-tune the generator on rule-guided prompts (loss on the answer tokens only); saves the adapter."""
    from rulerag.finetune.generator import GeneratorConfig, train_generator

    cfg = GeneratorConfig(bench=bench, out=out_dir, base=base, epochs=epochs, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
                          lora_r=lora_r, lora_alpha=lora_alpha, max_length=max_length, max_steps=max_steps, limit=limit,
                          eval_share=eval_share, patience=patience, seed=seed, threads=threads, overwrite=overwrite, progress=not quiet)
    result = train_generator(cfg)
    before, after = result.baseline.get("eval_loss"), result.best.get("eval_loss")
    scores = f"held-out answer loss {before:.3f} -> {after:.3f} (epoch {result.best_epoch})" if after is not None else "no held-out slice"
    err.print(f"saved adapter {out_dir} in {result.total_seconds:.0f}s (training {result.train_seconds:.0f}s); {scores}")
    err.print(f"use: rulerag ask \"QUESTION\" --index INDEX --rules RULES --model {out_dir}")


@finetune_app.command("check")
def finetune_check(
    path: Annotated[Path, typer.Argument(help="A directory written by `rulerag finetune retriever|generator`.")],
    as_json: JsonOpt = False,
) -> None:
    """Verify a fine-tuned model directory (every file against its completion marker) and show what it is."""
    from rulerag.checkpoint import fingerprint, verify_model_dir

    info = verify_model_dir(path)
    marker = info.marker or {}
    training = marker.get("training", {})
    summary = {"path": str(path), "kind": info.kind, "base_model": info.base_model, "fingerprint": fingerprint(path),
               "created_at": marker.get("created_at"), "files": len(marker.get("files", {})), "best_epoch": training.get("best_epoch"),
               "best": training.get("best"), "baseline": training.get("baseline"), "total_seconds": training.get("total_seconds")}
    if as_json:
        _print_json(summary)
        return
    table = Table(title=f"{path}: complete, every file matches its checksum" if marker else f"{path}: a model directory without a rulerag marker", show_header=False)
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
        table.add_row(key, "-" if value is None else str(value))
    out.print(table)


# ---------------------------------------------------------------------------- serve


@app.command()
def serve(
    index: IndexOpt = DEMO_INDEX,
    rules: RulesOpt = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8000,
    backend: Annotated[Optional[BackendKind], typer.Option("--backend", help="Generator backend.")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Worker processes on one port (about one per core), forked after the index and encoder are loaded once, so they share one copy of them (docs/serving.md).")] = 1,
) -> None:
    """Serve the QA web API and page (FastAPI + uvicorn). API keys: $RULERAG_API_KEYS or $RULERAG_API_KEYS_FILE."""
    from server.serve import serve as run_server

    settings = _settings(generation=_drop_none(backend=backend))
    run_server(index, rules, host, port, settings=settings, log_level=log_level, workers=workers)


# ---------------------------------------------------------------------------- check


@app.command()
def check(
    answers: Annotated[Path, typer.Option("--answers", help="JSONL with IFEval fields: response, instruction_id_list, kwargs; optional question, documents, golden_answers.")],
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Write one report per line here (JSONL).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Score answers you already have: instruction following (strict/loose), faithfulness, correctness."""
    from rulerag.checking import check_file
    from rulerag.io import atomic_file

    reports, summary = check_file(answers)
    if out_file is not None:
        with atomic_file(out_file, "wb") as fh:
            for report in reports:
                fh.write(orjson.dumps(report.to_dict()) + b"\n")
        err.print(f"wrote {len(reports)} reports to {out_file}")
    if as_json:
        _print_json(summary)
        return
    table = Table(title=f"{answers}: {summary['items']} answers", show_header=False)
    for key in ("prompt_level_strict_acc", "prompt_level_loose_acc", "instruction_level_strict_acc", "instruction_level_loose_acc",
                "followrag_if_score", "unsatisfiable", "k_precision", "k_precision_pp", "k_f1", "grounding_rate", "em", "f1", "recall"):
        value = summary.get(key)
        table.add_row(key, "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value)))
    out.print(table)


# ---------------------------------------------------------------------------- config


@config_app.command("show")
def config_show(as_yaml: Annotated[bool, typer.Option("--yaml", help="Print YAML instead of JSON.")] = False) -> None:
    """Print the effective settings (defaults < --config < environment)."""
    data = _settings().to_dict()
    if as_yaml:
        import yaml

        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    else:
        _print_json(data)


# ---------------------------------------------------------------------------- retrieve / ask


def _pipeline(index: Path, rules: Path | None, **sections: dict[str, Any]):
    from rulerag.pipeline import RuleRAG

    settings = _settings(**sections)
    if rules is None and settings.rules.path is None:
        rules = demo_rules_for(index)
        if rules is None and settings.retrieval.mode == Mode.rulerag:
            err.print("note: no rule file (--rules or rules.path): rulerag mode retrieves with the question only", style="yellow")
    return RuleRAG.from_index(index, rules, settings=settings)


def _rules_table(matches) -> Table:
    table = Table(title="Rules used", expand=True)
    table.add_column("score", justify="right", width=6)
    table.add_column("conf", justify="right", width=6)
    table.add_column("rule")
    for m in matches:
        conf = "-" if m.rule.confidence is None else f"{m.rule.confidence:.2f}"
        table.add_row(f"{m.score:.2f}", conf, m.rule.text)
    return table


def _docs_table(docs) -> Table:
    table = Table(title="Documents", expand=True)
    table.add_column("#", justify="right", width=3)
    table.add_column("score", justify="right", width=7)
    table.add_column("id", width=10)
    table.add_column("found by", width=12)
    table.add_column("contents")
    for d in docs:
        table.add_row(str(d.rank), f"{d.score:.4f}", d.id, ", ".join(d.found_by), d.contents)
    return table


@app.command()
def retrieve(
    question: Annotated[Optional[str], typer.Argument(help="The question (omit with --questions).")] = None,
    index: IndexOpt = DEMO_INDEX,
    rules: RulesOpt = None,
    mode: ModeOpt = None,
    k: KOpt = None,
    retriever: RetrieverOpt = None,
    merge: MergeOpt = None,
    questions: Annotated[Optional[Path], typer.Option("--questions", help="JSONL with 'id' and 'question' (optional 'relation'): answer all in one process.")] = None,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="With --questions: write JSONL here (else stdout).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Questions per retrieval batch.")] = 64,
    as_json: JsonOpt = False,
) -> None:
    """Retrieve documents (and matched rules) for a question, or for a file of questions. No generator is loaded."""
    if (question is None) == (questions is None):
        raise typer.BadParameter("give either a QUESTION or --questions FILE.jsonl")
    rag = _pipeline(index, rules, retrieval=_drop_none(k=k, mode=mode, retriever=retriever, merge=merge))
    if questions is not None:
        _retrieve_file(rag, questions, out_file, batch_size)
        return
    result = rag.retrieve(question)
    if as_json:
        _print_json(result.to_dict())
        return
    out.print(_rules_table(result.rules))
    out.print(_docs_table(result.documents))


def _retrieve_file(rag, path: Path, out_file: Path | None, batch_size: int) -> None:
    import contextlib

    from tqdm.auto import tqdm

    from rulerag.errors import InputFormatError
    from rulerag.io import atomic_file, iter_jsonl

    example = '{"id": "q1", "question": "..."}'
    items = []
    for lineno, obj in iter_jsonl(path, example):
        if not isinstance(obj.get("question"), str) or not obj["question"].strip():
            raise InputFormatError(path, lineno, "missing 'question' string", f"write {example}")
        items.append((str(obj.get("id", lineno)), obj["question"], obj.get("relation")))
    with contextlib.ExitStack() as stack:
        fh = stack.enter_context(atomic_file(out_file, "wb")) if out_file else sys.stdout.buffer
        for start in tqdm(range(0, len(items), batch_size), desc="retrieving", unit="batch", disable=out_file is None):
            chunk = items[start : start + batch_size]
            results = rag.retrieve_many([q for _, q, _ in chunk], relations=[r for _, _, r in chunk])
            for (qid, _, _), res in zip(chunk, results):
                fh.write(orjson.dumps({"id": qid, **res.to_dict()}) + b"\n")
    if out_file:
        err.print(f"wrote {len(items)} results to {out_file}")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    index: IndexOpt = DEMO_INDEX,
    rules: RulesOpt = None,
    mode: ModeOpt = None,
    k: KOpt = None,
    retriever: RetrieverOpt = None,
    merge: MergeOpt = None,
    backend: Annotated[Optional[BackendKind], typer.Option("--backend", help="llamacpp (default: the GGUF on llama.cpp), transformers (LoRA adapters), openai or fixed.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="Embedded model name, model dir or .gguf file.")] = None,
    instruction: Annotated[Optional[list[str]], typer.Option("--instruction", help="Output instruction in words, e.g. 'Answer in JSON.' (repeatable).")] = None,
    constraint: Annotated[Optional[list[str]], typer.Option("--constraint", help="Verifiable constraint ID or ID=JSON-kwargs, e.g. format_no_commas or 'length_words={\"relation\": \"less than\", \"num_words\": 20}' (repeatable).")] = None,
    refine_rounds: Annotated[Optional[int], typer.Option("--refine-rounds", min=0, max=10, help="Extra rounds when constraints fail.")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option("--max-new-tokens", min=1, help="Answer length limit.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question: matched rules, retrieved documents, and the generator's answer (optionally under output constraints)."""
    rag = _pipeline(
        index,
        rules,
        retrieval=_drop_none(k=k, mode=mode, retriever=retriever, merge=merge),
        generation=_drop_none(backend=backend, model=model, max_new_tokens=max_new_tokens),
    )
    _show_answer(rag.ask(question, instructions=instruction or (), constraints=_constraints(constraint or []), refine_rounds=refine_rounds), as_json)


def _constraints(specs: list[str]):
    from rulerag.checking.instructions import validate_kwargs
    from rulerag.errors import ConfigError
    from rulerag.refine import Constraint

    out_list = []
    for spec in specs:
        cid, _, raw = spec.partition("=")
        try:
            kwargs = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"--constraint {spec!r}: kwargs are not valid JSON ({exc}). Fix: ID='{{\"key\": value}}'") from exc
        if not isinstance(kwargs, dict):
            raise ConfigError(f"--constraint {spec!r}: kwargs must be a JSON object")
        validate_kwargs(cid.strip(), kwargs)
        out_list.append(Constraint(cid.strip(), kwargs))
    return out_list


def _show_answer(answer, as_json: bool) -> None:
    if as_json:
        _print_json(answer.to_dict())
        return
    for warning in answer.warnings:  # instruction-like text in the documents (prompt injection)
        out.print(f"warning: {warning}", style="yellow", markup=False, highlight=False)
    out.print(Panel(f"[bold]{answer.answer}[/bold]", title=f"Answer ({answer.mode.value}, {answer.generator})", subtitle=answer.question))
    if answer.support is not None and answer.support.supported:
        for path in answer.support.paths:  # why this answer: the documents (by number) and the rule
            out.print(f"why: {path}", markup=False, highlight=False)
    if answer.check is not None:
        verdicts = ", ".join(f"{i}: {'ok' if ok else 'FAILED'}" for i, ok in zip(answer.check.instruction_id_list, answer.check.strict.follow_instruction_list))
        out.print(f"constraints ({len(answer.rounds)} round(s)): {verdicts}")
    if answer.rules:
        out.print(_rules_table(answer.rules))
    out.print(_docs_table(answer.documents))
    out.print(", ".join(f"{k} {v:.2f}" for k, v in answer.timings.items()), style="dim")


@app.command()
def demo(
    question: Annotated[str, typer.Option("--question", help="Question to ask the demo index.")] = DEMO_QUESTION,
    mode: ModeOpt = None,
    backend: Annotated[Optional[BackendKind], typer.Option("--backend", help="llamacpp (default: the GGUF on llama.cpp), transformers (LoRA adapters), openai or fixed.")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Rebuild indexes/demo even if it exists.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build the demo index (first run) and answer the demo question with the demo rules."""
    from rulerag.pipeline import RuleRAG
    from rulerag.retrieval.index import build_index

    settings = _settings(retrieval=_drop_none(mode=mode), generation=_drop_none(backend=backend))
    if rebuild or not (DEMO_INDEX / "manifest.json").is_file():
        err.print(f"building the demo index at {DEMO_INDEX} ...")
        build_index(DEMO_CORPUS, DEMO_INDEX, settings, overwrite=True, progress=False)
    rag = RuleRAG.from_index(DEMO_INDEX, DEMO_RULES, settings=settings)
    _show_answer(rag.ask(question), as_json)


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit status 2."""
    try:
        app()
    except (RuleRAGError, FileExistsError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
