"""`rung export`: builtin:tiny after a short SFT, exported to safetensors and GGUF (f16, q8_0), reloaded and
compared; a tampered GGUF fails the check and leaves nothing; the Ollama template renders like the Jinja one;
bad inputs exit 2 with one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "examples" / "sql_assistant" / "data" / "train.jsonl"

pytest.importorskip("gguf", reason='GGUF export needs the gguf package: pip install "rung[train]"')


def invoke(*args):
    from rung.cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def sft_run(sql_lora_run):
    """builtin:tiny after LoRA SFT on the SQL rows: the suite's one shared run (tests/conftest.py)."""
    return sql_lora_run


def export(sft_run, out, *flags):
    result = invoke("export", sft_run, "--out", out, *flags)
    assert result.exit_code == 0, result.output
    record = yaml.safe_load((out / "rung_export.yaml").read_text())
    assert record["passed"] is True
    assert not [p for p in out.parent.iterdir() if ".exporting-" in p.name], "staging folder left behind"
    return result, record


@pytest.mark.slow
def test_safetensors_export_loads_alone_and_answers_identically(sft_run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    result, record = export(sft_run, out, "--format", "safetensors")
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                 "chat_template.jinja", "export_report.md"):
        assert (out / name).is_file(), name
    assert not (out / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.dtype == torch.float32  # builtin:tiny's dtype, kept
    assert tokenizer.chat_template and model.generation_config.eos_token_id
    figures = record["figures"]["transformers"]
    assert figures["exact_greedy_identical"] == figures["prompts"] == figures["greedy_identical"]
    assert figures["max_logit_diff"] <= 1e-3
    report = (out / "export_report.md").read_text()
    assert "result: passed" in report and "| tokenizer ids | transformers | 6/6 prompts identical" in report


@pytest.mark.slow
def test_gguf_f16_reloads_with_identical_greedy_tokens_and_writes_a_modelfile(sft_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rung.core.models import load_tokenizer
    from rung.trainers.export import verify
    from rung.trainers.export.ollama import parse_modelfile, render_go

    out = tmp_path / "gguf-f16"
    result, record = export(sft_run, out, "--format", "gguf", "--quant", "f16", "--ollama")
    assert (out / "model-f16.gguf").is_file() and (out / "Modelfile").is_file()
    figures = record["figures"]["transformers"]
    assert figures["exact_greedy_identical"] == figures["prompts"] == figures["tokens_identical"]
    assert figures["max_logit_diff"] <= verify.LOSSLESS_MAX_LOGIT_DIFF
    # transformers alone reads the file: config, weights and tokenizer
    model = AutoModelForCausalLM.from_pretrained(out, gguf_file="model-f16.gguf")
    tokenizer = AutoTokenizer.from_pretrained(out, gguf_file="model-f16.gguf")
    source = load_tokenizer(str(sft_run))
    for text in ("SELECT name FROM employees WHERE salary > 5000;", "naïve café 日本語 🙂\n\ttabs",
                 "<|im_start|>user\nhi<|im_end|>\n"):
        assert tokenizer(text)["input_ids"] == source(text)["input_ids"], text
    assert model.config.num_hidden_layers == 4

    # the Modelfile's Go template renders what the model's Jinja template renders (rung's Go-subset renderer)
    modelfile = parse_modelfile((out / "Modelfile").read_text())
    assert modelfile["from"] == "./model-f16.gguf"
    assert modelfile["stops"] == ["<|im_end|>", "<|endoftext|>"]
    conversation = [{"role": "system", "content": "You write SQL."}, {"role": "user", "content": "Count orders."},
                    {"role": "assistant", "content": "SELECT COUNT(*) FROM orders;"},
                    {"role": "user", "content": "And customers {{ in Paris }}?"}]
    expected = source.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    assert render_go(modelfile["template"], conversation) == expected


@pytest.mark.slow
def test_gguf_q8_0_meets_the_agreement_and_kl_thresholds(sft_run, tmp_path):
    from rung.trainers.export.verify import QUANT_THRESHOLDS

    out = tmp_path / "gguf-q8"
    result, record = export(sft_run, out, "--format", "gguf", "--quant", "q8_0")
    figures = record["figures"]["transformers"]
    assert figures["tokens_identical"] == figures["prompts"]
    assert figures["top1"] >= QUANT_THRESHOLDS["q8_0"].min_top1
    assert figures["mean_kl"] <= QUANT_THRESHOLDS["q8_0"].max_kl
    assert (out / "model-q8_0.gguf").stat().st_size < 0.6 * 2_800_000  # ~half the f16 file
    assert "top-1 agreement vs source" in (out / "export_report.md").read_text()


@pytest.mark.slow
def test_a_tampered_gguf_fails_the_check_and_leaves_nothing(sft_run, tmp_path):
    from gguf import GGUFReader

    from rung.trainers.export.pipeline import ExportCheckFailed, export_model

    def tamper(staging: Path) -> None:  # one tensor changed after writing, before the check
        reader = GGUFReader(staging / "model-f16.gguf", "r+")
        tensor = next(t for t in reader.tensors if t.name == "blk.1.attn_v.weight")
        tensor.data[:] = tensor.data[::-1].copy()
        reader.data.flush()

    out = tmp_path / "tampered"
    lines: list[str] = []
    with pytest.raises(ExportCheckFailed) as failure:
        export_model(str(sft_run), out, fmt="gguf", quant="f16", echo=lines.append, before_verify=tamper)
    assert failure.value.exit_code == 3
    assert "does not match the source" in failure.value.message
    assert any("FAIL" in line and "logit" in line for line in lines)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary sibling is gone too


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_llama_cpp_reads_the_gguf_like_the_source(sft_run, tmp_path, quant):
    """Only where llama-cpp-python is installed (`rung[export]`, a ~6-minute compile): llama.cpp itself loads the
    file, tokenizes every prompt the same way and agrees with the source within LLAMA_CPP_THRESHOLDS."""
    pytest.importorskip("llama_cpp", reason='llama-cpp-python is not installed: pip install "rung[export]"')
    from rung.trainers.export.verify import LLAMA_CPP_THRESHOLDS

    out = tmp_path / f"cpp-{quant}"
    result, record = export(sft_run, out, "--format", "gguf", "--quant", quant)
    figures = record["figures"]["llama.cpp"]
    assert figures["tokens_identical"] == figures["prompts"]
    assert figures["top1"] >= LLAMA_CPP_THRESHOLDS[quant].min_top1
    assert figures["mean_kl"] <= LLAMA_CPP_THRESHOLDS[quant].max_kl
    assert "| tokenizer ids | llama.cpp |" in (out / "export_report.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["Qwen2ForCausalLM", "MistralForCausalLM"])
def test_the_other_supported_architectures_round_trip(tiny_model_dir, tmp_path, architecture):
    """Qwen2 (q/k/v biases, no rotary permutation) and Mistral (written as llama), tiny, random weights."""
    import torch
    import transformers
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config_class = {"Qwen2ForCausalLM": transformers.Qwen2Config, "MistralForCausalLM": transformers.MistralConfig}
    config = config_class[architecture](vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                        max_position_embeddings=512, tie_word_embeddings=False,
                                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = getattr(transformers, architecture)(config)
    folder = tmp_path / architecture
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    out = tmp_path / "out"
    result = invoke("export", folder, "--out", out, "--format", "gguf")
    assert result.exit_code == 0, result.output
    figures = yaml.safe_load((out / "rung_export.yaml").read_text())["figures"]["transformers"]
    assert figures["exact_greedy_identical"] == figures["prompts"] and figures["max_logit_diff"] <= 1e-3


# ---------------------------------------------------------------------------------------------- bad inputs


def test_a_missing_run_exits_2_with_one_line(tmp_path):
    result = invoke("export", tmp_path / "no-such-run", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "does not exist" in result.output
    assert not (tmp_path / "out").exists()


def test_an_unknown_quant_exits_2_with_one_line(tiny_model_dir, tmp_path):
    result = invoke("export", tiny_model_dir, "--out", tmp_path / "out", "--format", "gguf", "--quant", "q4_k")
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert '--quant "q4_k" is not one of f16, bf16, q8_0, q4_0 (did you mean "q4_0"?)' in result.output


@pytest.mark.parametrize("flags, message", [
    (["--format", "onnx"], '--format "onnx" is not one of safetensors, gguf'),
    (["--quant", "q8_0"], "--quant is for --format gguf"),
    (["--ollama"], "--ollama writes a Modelfile beside a GGUF: add --format gguf"),
])
def test_other_bad_flags_exit_2_with_one_line(tiny_model_dir, tmp_path, flags, message):
    result = invoke("export", tiny_model_dir, "--out", tmp_path / "out", *flags)
    assert result.exit_code == 2 and message in result.output and result.output.strip().count("\n") == 0


def test_an_unsupported_architecture_exits_2_with_one_line(tmp_path):
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}')
    result = invoke("export", folder, "--out", tmp_path / "out", "--format", "gguf")
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert ("GGUF export supports LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM; this model is "
            "GPT2LMHeadModel") in result.output
    assert not (tmp_path / "out").exists()


def test_rope_scaling_is_refused_before_loading():
    from rung.trainers.export.gguf import architecture_problems

    config = {"architectures": ["LlamaForCausalLM"], "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}
    (problem,) = architecture_problems(config)
    assert 'rope scaling "llama3"' in problem
    assert architecture_problems({"architectures": ["LlamaForCausalLM"],
                                  "rope_parameters": {"rope_type": "default", "rope_theta": 5e5}}) == []


def test_held_out_prompts_follow_the_runs_split(tmp_path):
    from rung.trainers.data import load_train_eval
    from rung.trainers.export.source import MAX_PROMPTS, held_out_prompts

    (tmp_path / "resolved_config.yaml").write_text(yaml.safe_dump({
        "pipeline": "sft", "data": str(TRAIN), "eval_data": None,
        "settings": {"eval_fraction": 0.1, "seed": 42}}))
    prompts, where = held_out_prompts(tmp_path)
    _, held, _ = load_train_eval(TRAIN, None, "sft", 0.1, 42)
    assert len(prompts) == len(held) and "held-out rows of the run (10% held out, seed 42)" in where
    assert prompts[0] == held[0]["messages"][:-1] and prompts[0][-1]["role"] == "user"
    assert MAX_PROMPTS == 8
    (tmp_path / "resolved_config.yaml").write_text(yaml.safe_dump({
        "pipeline": "sft", "data": str(TRAIN), "settings": {"eval_fraction": 0.0, "seed": 42}}))
    assert held_out_prompts(tmp_path) == ([], "the run held out no rows")


# ---------------------------------------------------------------------------------------------- Ollama templates

CHATML = ("{%- for message in messages %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
          "{%- endif %}")
QWEN25 = ("{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + "
          "'<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a "
          "helpful assistant.<|im_end|>\\n' }}{%- endif %}{%- for message in messages %}{%- if message.role != "
          "'system' or not loop.first %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + "
          "'\\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
LLAMA3 = ("{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + "
          "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if "
          "add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
           "message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + "
           "eos_token }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}"
           "{% endfor %}")
LLAMA2_MERGED_SYSTEM = ("{% for message in messages %}{% if message['role'] == 'system' %}{{ '[INST] <<SYS>>\\n' + "
                        "message['content'] + '\\n<</SYS>>\\n\\n' }}{% elif message['role'] == 'user' %}"
                        "{% if loop.index0 == 1 %}{{ message['content'] + ' [/INST]' }}{% else %}{{ '[INST] ' + "
                        "message['content'] + ' [/INST]' }}{% endif %}{% else %}{{ ' ' + message['content'] + ' </s>' }}"
                        "{% endif %}{% endfor %}")


def jinja(template: str, bos: str = ""):
    import jinja2

    compiled = jinja2.Environment().from_string(template)

    def render(messages, generation):
        text = compiled.render(messages=messages, add_generation_prompt=generation, bos_token=bos, eos_token="</s>")
        return text[len(bos):] if bos and text.startswith(bos) else text

    return render


@pytest.mark.parametrize("template, bos, default", [
    (CHATML, "", None),
    (QWEN25, "", "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
    (LLAMA3, "<|begin_of_text|>", None),
])
def test_per_message_templates_translate_to_go_and_render_the_same(template, bos, default):
    from rung.trainers.export.ollama import CHECK_CONVERSATIONS, check_translation, derive_format, go_template, render_go

    render = jinja(template, bos)
    chat = derive_format(render)
    assert chat.default_system == default
    go = go_template(chat)
    assert check_translation(go, render) == []
    for conversation in CHECK_CONVERSATIONS:
        assert render_go(go, conversation) == render(conversation, True)


@pytest.mark.parametrize("template", [MISTRAL, LLAMA2_MERGED_SYSTEM])
def test_templates_that_merge_messages_are_refused(template):
    from rung.core.errors import RungError
    from rung.trainers.export.ollama import derive_format

    with pytest.raises(RungError, match="does not render each message on its own"):
        derive_format(jinja(template, "<s>"))


def test_the_go_renderer_handles_the_subset_it_claims():
    from rung.trainers.export.ollama import render_go

    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    template = ('{{- range $i, $_ := .Messages }}{{ if eq $i 0 }}[first]{{ end }}{{ if eq .Role "system" }}sys:'
                '{{ .Content }}{{ else if ne .Role "assistant" }}{{ .Role }}={{ .Content }}{{ else }}?{{ end }}  \n'
                '{{- end }}{{ "{{lit}}\\n" }}   {{- "x" -}}   y')
    assert render_go(template, messages) == "[first]sys:Suser=U{{lit}}\nxy"

