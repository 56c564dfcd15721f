"""bench/gpu/run.py on a machine without a GPU: the one-line refusal, its pure parts (the FLOP count against torch's
FlopCounterMode, MFU, the budget, the results file's checks, the carried files, pytest's report), and one dry run of
every section on the CPU with a tiny model (slow)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import zipfile

import pytest
import torch

from helpers import REPO, tiny_llama, tiny_tokenizer

sys.path.insert(0, str(REPO))
from bench.gpu import carry, flops, results, run  # noqa: E402

SCRIPT = REPO / "bench" / "gpu" / "run.py"


def _env():
    import os

    return {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{os.environ.get('PYTHONPATH', '')}"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_it_stops_with_one_line_and_exit_2(tmp_path):
    p = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                       env=_env(), cwd=REPO, timeout=120)
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith(f"bench/gpu/run.py: no CUDA device here (torch {torch.__version__} reports "
                               "torch.cuda.is_available() False)") and "--dry-run" in lines[0]
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize("method", ["full", "lora"])
def test_model_flops_equal_torch_flop_counter_on_shipsfts_loss(method):
    """The analytic count (bench/gpu/flops.py) equals what FlopCounterMode counts for one forward + backward of
    shipsft's loss on a tiny Llama (eager attention: its n x n products are plain matmuls that the counter sees)."""
    from torch.utils.flop_counter import FlopCounterMode

    from shipsft.config import MethodConfig
    from shipsft.model.load import apply_method
    from shipsft.train.loss import batch_ce_sum

    model = tiny_llama(vocab_size=300, attn_implementation="eager", tie_word_embeddings=True).train()
    lora = {"lora": {"r": 4, "alpha": 8}} if method == "lora" else {}
    model = apply_method(MethodConfig.model_validate({"name": method, **lora}), model, False)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 300, (2, 12), generator=g)
    labels = ids.clone()
    labels[:, :5] = -100  # 7 of 12 positions trained per row
    batch = {"input_ids": ids, "labels": labels, "position_ids": torch.arange(12).expand(2, 12)}
    with FlopCounterMode(display=False) as counter:
        batch_ce_sum(model, batch).backward()
    work = flops.Work(tokens=24, trained=14, attn_sq=2 * 12 * 12)
    assert flops.step_flops(flops.Shape.of(model.config), work, method, lora_rank=4) == counter.get_total_flops()
    assert counter.get_total_flops() == {"full": 12_672_000, "lora": 9_345_024}[method]


def test_gpu_shape_is_llama_3_2_1b_and_mfu_arithmetic():
    """The bench's model has Llama-3.2-1B's published parameter count (built on the meta device); the MFU of a known
    step is its FLOPs over seconds over the datasheet peak."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    conf = LlamaConfig(**run.GPU_SHAPE, vocab_size=128256, tie_word_embeddings=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(conf)
    total = sum(p.numel() for p in model.parameters())
    norms = (2 * conf.num_hidden_layers + 1) * conf.hidden_size
    assert total == 1_235_814_400
    shape = flops.Shape.of(conf)
    assert shape.params() == total - norms
    # full fine-tuning, one 1,000-token document fully trained: 6 x params x tokens + 12 L H hd n^2
    work = flops.Work(tokens=1000, trained=1000, attn_sq=1000 ** 2)
    f = flops.step_flops(shape, work, "full")
    assert f == 6 * shape.params() * 1000 + 12 * 16 * 32 * 64 * 1000 ** 2
    assert flops.mfu(f, 0.1, flops.peak_bf16("NVIDIA H100 80GB HBM3")) == pytest.approx(f / 0.1 / 989.5e12)
    assert flops.step_flops(shape, work, "qlora") == flops.step_flops(shape, work, "lora")
    assert flops.step_flops(shape, work, "lora") < f * 0.7  # no frozen weight gradients, adapters are tiny
    with pytest.raises(ValueError, match="method 'dpo'"):
        flops.step_flops(shape, work, "dpo")


def test_datasheet_peaks_by_device_name():
    assert flops.peak_bf16("NVIDIA H100 80GB HBM3") == 989.5e12
    assert flops.peak_bf16("NVIDIA H100 PCIe") == 756.5e12
    assert flops.peak_bf16("NVIDIA H100 NVL") == 835.5e12
    assert flops.peak_bf16("NVIDIA H200") == 989.5e12
    assert flops.peak_bf16("NVIDIA H200 NVL") == 835.5e12
    assert flops.peak_bf16("NVIDIA A100-SXM4-80GB") == 312e12
    assert flops.peak_bf16("NVIDIA GeForce RTX 4090") is None
    assert flops.mfu(1e15, 1.0, None) is None and flops.mfu(1e15, 0.0, 1e15) is None


def test_budget_starts_nothing_it_cannot_finish():
    now = [0.0]
    b = run.Budget(100, clock=lambda: now[0])
    assert b.timeout(30) == 30 and b.timeout() == 100
    now[0] = 75
    assert b.left() == 25 and b.timeout(30) == 25
    now[0] = 100 - run.MIN_START_S + 1
    assert b.timeout(30) is None


def test_rollup_ratios_and_memory_rows():
    assert results.rollup(["ok", "skipped"]) == "ok"
    assert results.rollup(["skipped", "skipped"]) == "skipped"
    assert results.rollup(["ok", "failed", "error"]) == "error"
    assert results.rollup(["ok", "failed"]) == "failed"
    shape = flops.Shape(64, 128, 2, 4, 2, 16, 512)
    r = {"work": {"tokens": 1000, "trained": 200, "attn_sq": 50_000}, "seconds": 2.0}
    got = run.rate(r, shape, "lora", {"datasheet": None, "matmul": 1e12})
    f = flops.step_flops(shape, flops.Work(1000, 200, 50_000), "lora", run.LORA["r"])
    assert got == {"tok_s": 500.0, "trained_tok_s": 100.0, "model_tflops": f / 2 / 1e12, "mfu_datasheet": None,
                   "mfu_matmul": f / 2 / 1e12}
    rows = [{"name": "shipsft-lora", "tool": "shipsft", "method": "lora", "status": "ok", "trained_tok_s": 300.0,
             "memory": {"measured_peak": 10e9}},
            {"name": "trl-lora", "tool": "trl", "method": "lora", "status": "ok", "trained_tok_s": 100.0},
            {"name": "trl-lora-liger", "tool": "trl", "method": "lora", "status": "ok", "trained_tok_s": 150.0},
            {"name": "shipsft-full", "tool": "shipsft", "method": "full", "status": "error", "error": "exit 1: OOM"}]
    assert run.ratios(rows) == {"lora": {"shipsft": "shipsft-lora", "trl_best": "trl-lora-liger", "speedup": 2.0}}
    plans = {"shipsft-lora": {"status": "ok", "peak": 12e9, "moment": "step"},
             "shipsft-full": {"status": "ok", "peak": 30e9, "moment": "step"}}
    assert run.memory_rows(rows, plans) == [{"name": "shipsft-lora", "measured_peak": 10e9, "plan_status": "ok",
                                             "planned_peak": 12e9, "moment": "step", "error": pytest.approx(0.2)}]


def test_results_check_flags_what_a_reader_could_not_use(tmp_path):
    good = results.new(False, 450, "run.py --out x", {"batch": 12})
    good["sections"]["prepare"] = {"status": "ok", "env": {}, "matmul": {}, "model": {}}
    good["sections"]["throughput"] = {"status": "ok", "contenders": [
        {"name": "a", "status": "ok", "seconds": 1.0, "tok_s": 5.0, "trained_tok_s": 1.0, "model_tflops": 0.1,
         "timed_steps": 3},
        {"name": "b", "status": "skipped", "why": "time budget"}]}
    assert results.check(good) == []
    results.write({**good, "wall_s": float("nan")}, tmp_path / "r.json")  # non-finite -> null, strict JSON
    assert json.loads((tmp_path / "r.json").read_text())["wall_s"] is None
    bad = json.loads(json.dumps(good))
    bad["sections"]["numerics"] = {"status": "error"}
    bad["sections"]["cuda_tests"] = {"status": "passed"}
    bad["sections"]["throughput"]["contenders"][0]["tok_s"] = 0
    bad["sections"]["throughput"]["contenders"][1] = {"name": "b", "status": "skipped"}
    bad["wall_s"] = float("inf")
    assert results.check(bad) == [
        "not strict JSON: a NaN or an infinity (write null for what was not measured)",
        "section numerics: error without a one-line reason",
        "section cuda_tests: status 'passed' not in ('ok', 'failed', 'error', 'skipped')",
        "contender a: tok_s = 0, expected a positive number",
        "contender b: skipped without a reason"]


def test_unavailable_contenders_say_why():
    has = {"trl": True, "liger_kernel": False, "bitsandbytes": False}
    assert results.unavailable("trl", "lora", True, has, "cuda") == "liger-kernel is not installed (not carried)"
    assert results.unavailable("shipsft", "lora", True, has, "cuda") is None  # shipsft falls back to its chunked CE
    assert results.unavailable("shipsft", "qlora", True, has, "cuda") == "bitsandbytes is not installed (not carried)"
    assert results.unavailable("shipsft", "qlora", True, {**has, "bitsandbytes": True}, "cpu") == \
        "QLoRA needs a CUDA GPU (bitsandbytes' NF4 kernels)"
    assert results.unavailable("trl", "full", False, {**has, "trl": False}, "cuda") == \
        "trl is not installed (not carried)"


def test_prepare_pins_every_wheel_and_trims_bitsandbytes_to_the_images_cuda(tmp_path):
    commands = carry.prepare_commands(tmp_path)
    assert [c[-len(carry.WHEELS):] for c in commands[:1]] == [carry.WHEELS]
    assert commands[1][-1] == carry.BITSANDBYTES and all("==" in w for w in carry.WHEELS + [carry.BITSANDBYTES])
    assert all(c[c.index("--python-version") + 1] == "3.12" and "--no-deps" in c for c in commands)
    wheel = tmp_path / "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name in ("bitsandbytes/__init__.py", "bitsandbytes/libbitsandbytes_cuda118.so",
                     "bitsandbytes/libbitsandbytes_cuda130.so", "bitsandbytes/libbitsandbytes_cpu.so",
                     "bitsandbytes/libbitsandbytes_rocm64.so", "bitsandbytes-0.50.2.dist-info/METADATA"):
            z.writestr(name, "x" * 10)
    assert carry.trim_bitsandbytes(wheel, tmp_path / "bnb") == 40
    assert sorted(str(p.relative_to(tmp_path / "bnb")) for p in (tmp_path / "bnb").rglob("*") if p.is_file()) == [
        "bitsandbytes-0.50.2.dist-info/METADATA", "bitsandbytes/__init__.py", "bitsandbytes/libbitsandbytes_cpu.so",
        "bitsandbytes/libbitsandbytes_cuda130.so"]
    pkg = tmp_path / "site" / "carried_pkg_xyz"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    assert carry.findable("carried_pkg_xyz", [str(tmp_path / "site")]) and not carry.findable("carried_pkg_xyz", [])


def test_a_carried_wheel_that_does_not_install_is_a_results_file_with_the_reason(tmp_path):
    """pip's own error reaches the results file (and the call's output) as one line; nothing else is run."""
    (tmp_path / "carried" / "whl").mkdir(parents=True)
    (tmp_path / "carried" / "whl" / "broken-1.0-py3-none-any.whl").write_text("not a zip file")
    p = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--carried", str(tmp_path / "carried"),
                        "--tokenizer", str(tmp_path), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                       env=_env(), cwd=REPO, timeout=300)
    assert p.returncode == 2 and "no tokenizer at" in p.stderr  # the tokenizer is checked before anything runs
    tiny_tokenizer().save_pretrained(tmp_path / "tok")
    p = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--carried", str(tmp_path / "carried"),
                        "--tokenizer", str(tmp_path / "tok"), "--out", str(tmp_path / "out")], capture_output=True,
                       text=True, env=_env(), cwd=REPO, timeout=300)
    assert p.returncode == 1
    r = json.loads((tmp_path / "out" / "gpu-results.json").read_text())
    assert results.check(r) == [] and list(r["sections"]) == ["prepare"]
    err = r["sections"]["prepare"]["error"]
    assert err.startswith(f"installing {tmp_path / 'carried'}/whl failed: ") and "broken-1.0" in err
    assert "\n" not in err and "prepare: error" in p.stdout


def test_device_command_fits_the_tool_and_the_docs_say_it():
    """The one device call the docs prescribe: under the tool's 2,000 characters, the same in the script's
    docstring and in docs/gpu.md, and its options parse."""
    command = "PYTHONPATH=src python3 bench/gpu/run.py --carried .gpu --out $OUT --budget-s 450"
    assert len(command) < 2000
    assert command in run.__doc__ and command in (REPO / "docs" / "gpu.md").read_text()
    a = run.parse_args(command.split("run.py ", 1)[1].replace("$OUT", "/tmp/o").split())
    assert (a.carried.name, a.budget_s, a.sections, a.dry_run) == (".gpu", 450.0, run.SECTIONS, False)


def test_cuda_tests_are_found_and_pytests_report_is_read(tmp_path):
    assert {"tests/model/test_attention.py", "tests/train/test_loss.py"} <= set(run.cuda_test_files(REPO))
    (tmp_path / "test_three.py").write_text(
        "import pytest\n\ndef test_a():\n    pass\n\ndef test_b():\n    assert 1 == 2, 'one is not two'\n\n"
        "@pytest.mark.skip(reason='no GPU')\ndef test_c():\n    pass\n")
    junit = tmp_path / "junit.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
                    str(tmp_path / "test_three.py")], cwd=tmp_path, capture_output=True, timeout=120)
    got = {t["id"].split("::")[-1]: (t["outcome"], t["message"]) for t in run.parse_junit(junit)}
    assert got["test_a"] == ("passed", "") and got["test_c"] == ("skipped", "no GPU")
    assert got["test_b"][0] == "failed" and "one is not two" in got["test_b"][1]


def test_shipsft_contender_configs_are_valid_run_configs(tmp_path):
    from shipsft.config import RunConfig

    for method in ("lora", "full", "qlora"):
        raw = run.shipsft_config(tmp_path / "m", tmp_path / "d.jsonl", method, run.SETTINGS["gpu"], tmp_path, "x")
        cfg = RunConfig.model_validate(raw)
        assert (cfg.method.name, cfg.train.batch_size, cfg.train.micro_batch_tokens) == (method, 12, 16384)
        assert cfg.model.attn_implementation == "per_document" and cfg.train.precision == "auto"
        assert cfg.optim.lr == run.LR[method]


@pytest.mark.slow
def test_dry_run_runs_every_section_on_the_cpu(tmp_path):
    """Every section through its real code on a tiny random Llama and the toy tokenizer: the results file is
    well-formed, the numerics pass with a leak control that would be seen, shipsft trains, QLoRA says why not."""
    import importlib.util

    tok = tmp_path / "tok"
    tiny_tokenizer().save_pretrained(tok)
    contenders = ["shipsft-lora", "shipsft-qlora"] + (["trl-lora"] if importlib.util.find_spec("trl") else [])
    p = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(tmp_path / "out"), "--tokenizer",
                        str(tok), "--contenders", *contenders], capture_output=True, text=True, env=_env(), cwd=REPO,
                       timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads((tmp_path / "out" / "gpu-results.json").read_text())
    assert results.check(r) == [] and r["dry_run"] is True
    s = r["sections"]
    assert s["prepare"]["model"]["params"] == sum(x.numel() for x in tiny_llama(
        vocab_size=len(tiny_tokenizer()), **run.DRY_SHAPE, tie_word_embeddings=True).parameters())
    assert s["cuda_tests"]["status"] == "skipped"
    assert {"tests.model.test_attention::test_cuda_packed_logits_equal_sdpa",
            "tests.train.test_loss::test_cuda_liger_fused_ce_equals_the_chunked_ce_value_and_grads"} <= \
        {t["id"] for t in s["cuda_tests"]["tests"] if t["outcome"] == "skipped"}
    num = s["numerics"]
    assert num["status"] == "ok" and [c["method"] for c in num["bf16_vs_fp32"]] == ["full", "lora"]
    assert all(c["grad_rel"] > 0 for c in num["bf16_vs_fp32"])  # bf16 really ran: not bit-identical to fp32
    for path in ("sdpa", "per_document"):
        assert num["packing"][path]["fp32"]["ok"] and num["packing"][path]["fp32"]["leak_seen"]
    assert num["packing"]["leak_control"]["fp32"]["hidden_rel"] > 1e-3
    rows = {c["name"]: c for c in s["throughput"]["contenders"]}
    ship = rows["shipsft-lora"]
    assert ship["status"] == "ok" and ship["timed_steps"] == run.SETTINGS["dry"]["steps"]
    assert ship["losses"][0] == pytest.approx(math.log(len(tiny_tokenizer())), abs=0.05)  # random weights: ln V
    assert 0 < ship["work"]["trained"] < ship["work"]["tokens"] and ship["work"]["attn_sq"] > 0
    assert rows["shipsft-qlora"]["status"] == "skipped" and rows["shipsft-qlora"]["why"] in (
        "bitsandbytes is not installed (not carried)", "QLoRA needs a CUDA GPU (bitsandbytes' NF4 kernels)")
    if "trl-lora" in rows:
        assert rows["trl-lora"]["status"] == "ok" and "lora" in s["throughput"]["ratios"]
    mem = {m["name"]: m for m in s["plan"]["memory"]}
    assert mem["shipsft-lora"]["plan_status"] == "ok" and abs(mem["shipsft-lora"]["error"]) < 0.5
    assert "| shipsft-lora | ok |" in p.stdout
