"""RuleRAG-FT generator: answer-only loss masking, one LoRA step on a tiny random-weight causal LM
(built from a config, with the packaged MiniLM tokenizer given a chat template), a saved adapter
that the transformers backend loads, and refusal of partial or mismatched adapters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("peft", reason="generator fine-tuning needs peft: pip install -e '.[finetune]'")

from rulerag.errors import GenerationError  # noqa: E402
from rulerag.checkpoint import MARKER, read_marker  # noqa: E402
from rulerag.finetune.data import GeneratorExample  # noqa: E402
from rulerag.generation.prompts import rulerag_prompt  # noqa: E402

CHAT = ("{% for m in messages %}[unused0] {{ m['role'] }} {{ m['content'] }} [unused1] {% endfor %}"
        "{% if add_generation_prompt %}[unused0] assistant {% endif %}")
FACTS = [("Norland", "Tarvik"), ("Karsland", "Valdoria"), ("Dravport", "Ulmstad"), ("Brenica", "Corvane"), ("Elsmark", "Fennow")]


def build_tiny_lm(out: Path, hidden: int = 32, seed: int = 0) -> Path:
    """A random-weight Llama-architecture LM (2 layers) with MiniLM's tokenizer, an end token and a chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from rulerag.embedding import resolve_model_path

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(resolve_model_path("all-MiniLM-L6-v2")))
    tok.eos_token = "[SEP]"
    tok.chat_template = CHAT
    config = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_generator_bench(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    rule = "[Entity1, Make a visit, Entity2] leads to [Entity1, Consult, Entity2]"
    with open(out / "finetune_generator.jsonl", "w") as fh:
        for i, (s, o) in enumerate(FACTS * 2):
            p = rulerag_prompt(f"{s} consult whom?", [f"{s} make a visit {o}."], [rule])
            fh.write(json.dumps({"id": f"g{i}", "system": p.system, "prompt": p.user, "answer": o, "prompt_version": "2"}) + "\n")
    return out


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("lm") / "tiny-lm")


@pytest.fixture(scope="module")
def adapter(tiny_lm, tmp_path_factory):
    from rulerag.finetune.generator import GeneratorConfig, train_generator

    bench = build_generator_bench(tmp_path_factory.mktemp("gbench") / "toy")
    out = tmp_path_factory.mktemp("adapters") / "toy-lora"
    result = train_generator(GeneratorConfig(bench=bench, out=out, base=str(tiny_lm), max_steps=1, batch_size=2, grad_accum=1, lr=5e-2,
                                             eval_share=0.2, max_length=256, progress=False, threads=1))
    return result, out


def test_loss_covers_only_the_answer_and_its_end_token(tiny_lm):
    from transformers import AutoTokenizer

    from rulerag.finetune.generator import IGNORE, encode_example
    from rulerag.generation.backends import render_prompt
    from rulerag.generation.prompts import Prompt

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    ex = GeneratorExample("1", "Be brief.", "Norland consult whom? Answer:", "Tarvik")
    enc = encode_example(tok, ex, 512)
    answer = [t for t, label in zip(enc.input_ids, enc.labels) if label != IGNORE]
    assert answer == tok("Tarvik", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert enc.labels[: len(enc.labels) - len(answer)] == [IGNORE] * (len(enc.labels) - len(answer))
    text, chat = render_prompt(tok, Prompt(ex.system, ex.prompt, "finetune"))
    assert chat and tok.decode(enc.input_ids[: -len(answer)]) == tok.decode(tok(text, add_special_tokens=False)["input_ids"])
    short = encode_example(tok, ex, 20)  # over-long: the prompt is cut from the left, the answer kept
    assert short.truncated and len(short.input_ids) == 20 and short.labels[-len(answer):] == answer


def test_one_step_saves_an_adapter_with_card_and_marker(adapter, tiny_lm):
    result, out = adapter
    assert result.history[-1]["steps"] == 1 and result.trainable_parameters < result.total_parameters
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", MARKER} <= {p.name for p in out.iterdir()}
    marker = read_marker(out)
    assert marker["kind"] == "generator-adapter" and marker["base_model"] == str(tiny_lm.resolve())
    assert marker["base_config"]["hidden_size"] == 32
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_lm.resolve())
    card = (out / "README.md").read_text()
    assert "answer tokens only" in card and "Held-out scores per epoch" in card and "trainable parameters" in card


def test_backend_loads_the_adapter_and_it_changes_the_model(adapter, tiny_lm):
    import torch

    from rulerag.generation.backends import TransformersBackend

    _, out = adapter
    prompt = rulerag_prompt("Norland consult whom?", ["Norland make a visit Tarvik."], [])
    plain = TransformersBackend(str(tiny_lm))
    tuned = TransformersBackend(str(tiny_lm), adapter=out)
    by_dir = TransformersBackend(str(out))  # the adapter alone: the base comes from its marker
    assert by_dir.model_ref == str(tiny_lm.resolve()) and by_dir.name.endswith(f"+{out}")
    for backend in (plain, tuned, by_dir):
        assert isinstance(backend.generate(prompt, max_new_tokens=3), str)
    ids = torch.tensor([[101, 7592, 2088, 102]])
    with torch.no_grad():
        base_logits, tuned_logits, dir_logits = (b._model(ids).logits for b in (plain, tuned, by_dir))
    assert not torch.allclose(base_logits, tuned_logits, atol=1e-6)  # the LoRA step changed the weights
    assert torch.allclose(tuned_logits, dir_logits)


def test_partial_or_mismatched_adapters_are_refused(adapter, tmp_path):
    from rulerag.generation.backends import TransformersBackend

    _, out = adapter
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)
    (partial / "adapter_model.safetensors").unlink()
    with pytest.raises(GenerationError, match=r"no weights file .*the checkpoint is partial\. Fix: re-run `rulerag finetune generator"):
        TransformersBackend(str(partial))
    unfinished = tmp_path / "unfinished"
    shutil.copytree(out, unfinished)
    (unfinished / MARKER).unlink()
    with pytest.raises(GenerationError, match="lacks the completion marker"):
        TransformersBackend(str(unfinished))
    other = build_tiny_lm(tmp_path / "other-base", hidden=16)
    with pytest.raises(GenerationError, match=r"trained on base model .*\(hidden_size 32 vs 16\)\. Fix: load the adapter with the base model"):
        TransformersBackend(str(other), adapter=out).load()


def test_generator_settings_and_inputs_are_checked(tmp_path):
    from rulerag.errors import ConfigError
    from rulerag.finetune.generator import GeneratorConfig, train_generator

    with pytest.raises(ConfigError, match="grad_accum must be >= 1"):
        GeneratorConfig(bench=tmp_path, out=tmp_path / "x", grad_accum=0)
    with pytest.raises(ConfigError, match="finetune_generator.jsonl does not exist"):
        train_generator(GeneratorConfig(bench=tmp_path, out=tmp_path / "x"))
    build_generator_bench(tmp_path / "b")
    with pytest.raises(GenerationError, match="GGUF file, which cannot be fine-tuned directly"):
        train_generator(GeneratorConfig(bench=tmp_path / "b", out=tmp_path / "y", base="model.gguf"))
