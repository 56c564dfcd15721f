"""shipsft on a GPU, measured in one prepared call: correctness checks and speed against TRL, one results file.

On a machine with CUDA it runs, in this order, inside a time budget (--budget-s, 450 s by default: under 8 minutes
with the start and the pip installs), writing <--out>/gpu-results.json after every section:

  prepare     device, package versions, an 8192^3 bf16 matmul's rate, and a random-weight Llama-3.2-1B-shaped model
              (1.24B parameters, built from a config: nothing downloaded) saved with the carried Llama-3.2 tokenizer
  cuda_tests  the suite's CUDA-only tests (`@pytest.mark.cuda`, found by scanning tests/), through pytest
  numerics    bf16 autocast vs fp32 on one batch (loss and every gradient; full and LoRA), and per-document packing
              equivalence: each document of a packed row against the document run alone (loss and hidden states,
              fp32 and bf16) on the SDPA path, shipsft's per_document path and flash-attn's varlen path when
              installed, with a leak control (the same row with isolation off) that the check must tell apart
  throughput  LoRA and full fine-tuning, shipsft vs TRL's SFTTrainer (and TRL with liger-kernel), QLoRA (NF4) when
              bitsandbytes is carried: tokens/s, trained tokens/s, TFLOP/s and MFU (bench/gpu/flops.py) over the
              steps after a warm-up, each contender in its own process
  plan        `shipsft plan` on each shipsft contender's own config, against the peak memory that contender
              measured (allocator peak + what the CUDA context holds outside it)

Without CUDA it stops at once with one line and exit code 2; --dry-run runs every section on the CPU with a tiny
model instead (what tests/bench/test_gpu_script.py does), so the plumbing is tested where no GPU is.

Prepare the carried files here (needs PyPI; writes .gpu/, which .gitignore keeps out of git; docs/gpu.md has the
sizes against the device tool's carry limit):

    python bench/gpu/run.py --prepare .gpu

which runs exactly (the image's Python is 3.12, so the wheels are for CPython 3.12 on x86-64 Linux):

    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .gpu/whl trl==1.16.0 datasets==5.2.0 dill==0.4.1 \
        multiprocess==0.70.19 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
        typing-inspection==0.4.5 typing-extensions==4.16.0 liger-kernel==0.8.5
    pip download (same flags) -d .gpu/dl bitsandbytes==0.50.2
    unzip the bitsandbytes wheel into .gpu/bnb without its native libraries for other CUDA / ROCm / XPU versions
        (the image's torch is 2.11.0+cu130: bitsandbytes loads libbitsandbytes_cuda130.so)
    copy ../shared/fixtures/models/llama-3.2-instruct (tokenizer and chat template) to .gpu/tokenizer

Then one device call (carry [".gpu"]; timeout_s 600):

    PYTHONPATH=src python3 bench/gpu/run.py --carried .gpu --out $OUT --budget-s 450

The results file comes back under the call's files_at; copy it to bench/results/gpu-<card>.json and commit it.
Options: --sections / --contenders to run a part (a rerun after a failure), --warmup / --steps per contender.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.gpu import results as res  # noqa: E402
from bench.gpu.carry import (BNB_KEEP, TOKENIZER_FIXTURE, findable, install_carried, prepare_carry,  # noqa: E402
                             tree_bytes)
from bench.gpu.flops import Shape, Work, mfu, peak_bf16, step_flops  # noqa: E402

RESULTS = "gpu-results.json"
NO_CUDA = ("bench/gpu/run.py: no CUDA device here (torch {torch} reports torch.cuda.is_available() False); this "
           "benchmark measures a GPU. Fix: run it on a CUDA machine (docs/gpu.md: one device call), or add --dry-run "
           "to run every section on the CPU with a tiny model.")
SECTIONS = ["cuda_tests", "numerics", "throughput", "plan"]
# Llama-3.2-1B's shape (meta-llama/Llama-3.2-1B config.json), with the Llama-3.2 tokenizer's 128,256 tokens
GPU_SHAPE = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                 num_key_value_heads=8, head_dim=64)
DRY_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16)
LORA = {"r": 16, "alpha": 32, "dropout": 0.0}
TEMPLATE_KWARGS = {"date_string": "26 Jul 2024"}  # Llama 3.2's template prints today's date unless given one
# per setting: examples per optimizer step, (words listed, words repeated) per conversation (bench/train_vs_trl.py's
# task; ~750 tokens, ~115 trained per conversation with the Llama-3.2 tokenizer), row length, tokens per forward,
# warm-up and timed steps, documents in the numerics batch
SETTINGS = {
    "gpu": dict(batch=12, words=[[300, 700], [40, 160]], max_length=2048, micro_batch_tokens=16384, warmup=3,
                steps=12, numerics_docs=4, shape=GPU_SHAPE),
    "dry": dict(batch=2, words=[[10, 30], [2, 8]], max_length=256, micro_batch_tokens=1024, warmup=1, steps=2,
                numerics_docs=3, shape=DRY_SHAPE),
}
# (name, tool, method, liger): in the order they run, the most telling first, so a short budget keeps the core
CONTENDERS = [("shipsft-lora", "shipsft", "lora", True), ("trl-lora", "trl", "lora", False),
              ("trl-lora-liger", "trl", "lora", True), ("shipsft-full", "shipsft", "full", True),
              ("trl-full", "trl", "full", False), ("shipsft-qlora", "shipsft", "qlora", True),
              ("trl-full-liger", "trl", "full", True), ("shipsft-lora-chunked-ce", "shipsft", "lora", False)]
LR = {"lora": 2e-4, "qlora": 2e-4, "full": 2e-5}
CONTENDER_CAP_S = 150  # no contender may take more than this (loading included)
MIN_START_S = 20  # a contender or section is not started with less budget left


# ------------------------------------------------------------------------------------------------------------------
# the run


class Budget:
    """The deadline every section and contender is started against."""

    def __init__(self, seconds: float, clock=time.monotonic):
        self.clock, self.start, self.seconds = clock, clock(), seconds

    def left(self) -> float:
        return self.seconds - (self.clock() - self.start)

    def timeout(self, cap: float = float("inf")) -> float | None:
        """Seconds the next piece of work may take, or None when too little is left to start it."""
        left = self.left()
        return None if left < MIN_START_S else min(left, cap)


def last_line(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1][:500] if lines else ""


def run_worker(name: str, spec: dict, env: dict, timeout: float, work: Path) -> dict:
    """One worker in its own process; its result dict, or an error dict naming the exit code and the last line of
    its stderr (the full log stays in the work folder)."""
    tag = spec.get("name", name)
    spec_path, result_path, log = work / f"{tag}.spec.json", work / f"{tag}.result.json", work / f"{tag}.log"
    spec_path.write_text(json.dumps(spec))
    result_path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--spec", str(spec_path), "--result",
           str(result_path)]
    try:
        with open(log, "w") as f:
            p = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, cwd=REPO)
        code = p.returncode
    except subprocess.TimeoutExpired:
        code = None
    seconds = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    if code == 0 and result_path.exists():
        return {**json.loads(result_path.read_text()), "wall_s": seconds}
    why = f"timed out after {timeout:.0f} s" if code is None else f"exit {code}"
    return {"status": "error", "error": f"{why}: {last_line(text)}", "wall_s": seconds,
            "log_tail": text.strip().splitlines()[-15:]}


def worker_env(paths: list[str]) -> dict:
    """The environment of a worker: src and the carried packages first on the path, everything offline."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), *paths] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH")
                                                                        else []))
    env.update(PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled", HF_HUB_DISABLE_TELEMETRY="1")
    return env


def write_data(path: Path, n: int, words) -> None:
    from bench.train_vs_trl import conversations

    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations(n, 1234, *words)))


def shipsft_config(model_dir: Path, data: Path, method: str, setting: dict, out_dir: Path, name: str) -> dict:
    """The config of a shipsft contender: shipsft's defaults (per_document attention, precision auto: bf16 on a GPU,
    packing, rows joined), the contender's method, TRL's batch and lr, one forward per step, one epoch."""
    m = {"name": method} if method == "full" else {"name": method, "lora": LORA}
    return {"model": {"path": str(model_dir)},
            "data": {"train": [str(data)], "max_length": setting["max_length"], "template_kwargs": TEMPLATE_KWARGS},
            "method": m, "optim": {"lr": LR[method], "schedule": "constant", "warmup_steps": 0},
            "train": {"batch_size": setting["batch"], "epochs": 1, "micro_batch_tokens": setting["micro_batch_tokens"],
                      "seed": 0, "log_every": 1},
            "output": {"dir": str(out_dir), "name": name}}


def cuda_test_files(root: Path) -> list[str]:
    """Test files that hold a test marked `pytest.mark.cuda` (relative to the repository)."""
    return sorted(str(p.relative_to(root)) for p in (root / "tests").rglob("test_*.py")
                  if "pytest.mark.cuda" in p.read_text(errors="replace"))


def parse_junit(path: Path) -> list[dict]:
    """pytest's --junitxml report as one dict per test: id, outcome (passed / failed / error / skipped), message."""
    import xml.etree.ElementTree as ET

    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                outcome = {"failure": "failed"}.get(kind, kind)
                message = (node.get("message") or "").strip().splitlines()[0][:300] if node.get("message") else ""
                break
        out.append({"id": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome, "message": message})
    return out


def run_cuda_tests(env: dict, timeout: float, work: Path) -> dict:
    files = cuda_test_files(REPO)
    if not files:
        return {"status": "skipped", "why": "no test is marked pytest.mark.cuda"}
    junit = work / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
           *files]
    try:
        p = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": f"pytest timed out after {timeout:.0f} s", "files": files}
    tests = parse_junit(junit) if junit.exists() else []
    outcomes = [t["outcome"] for t in tests]
    status = ("error" if not tests else "failed" if any(o in ("failed", "error") for o in outcomes)
              else "skipped" if all(o == "skipped" for o in outcomes) else "ok")
    out = {"status": status, "files": files, "tests": tests, "exit_code": p.returncode}
    if status == "skipped":
        out["why"] = f"every CUDA test skipped ({tests[0]['message']})"
    if status == "error":
        out["error"] = f"pytest exit {p.returncode}: {last_line(p.stdout + p.stderr)}"
    return out


def numerics_status(r: dict) -> str:
    """ok when every precision and packing check passed and every leak control was seen; failed otherwise."""
    if r.get("status") != "ok":
        return r.get("status", "error")
    checks = [c["ok"] for c in r["bf16_vs_fp32"]]
    for name, path in r["packing"].items():
        if name != "leak_control" and path.get("status") == "ok":
            checks += [path["fp32"]["ok"], path["bf16"]["ok"], path["fp32"]["leak_seen"]]
    return "ok" if all(checks) else "failed"


def rate(result: dict, shape: Shape, method: str, peaks: dict) -> dict:
    """Throughput figures of one contender's timed steps: tokens/s, trained tokens/s, model FLOPs and MFU."""
    w = Work(**result["work"])
    flops = step_flops(shape, w, method, LORA["r"])
    s = result["seconds"]
    return {"tok_s": w.tokens / s, "trained_tok_s": w.trained / s, "model_tflops": flops / s / 1e12,
            "mfu_datasheet": mfu(flops, s, peaks.get("datasheet")), "mfu_matmul": mfu(flops, s, peaks.get("matmul"))}


def ratios(contenders: list[dict]) -> dict:
    """Per method: shipsft's trained tokens/s over the best TRL contender's."""
    out = {}
    ok = [c for c in contenders if c.get("status") == "ok"]
    for method in ("lora", "full"):
        ship = next((c for c in ok if c["name"] == f"shipsft-{method}"), None)
        trl = [c for c in ok if c["tool"] == "trl" and c["method"] == method]
        if ship and trl:
            best = max(trl, key=lambda c: c["trained_tok_s"])
            out[method] = {"shipsft": ship["name"], "trl_best": best["name"],
                           "speedup": ship["trained_tok_s"] / best["trained_tok_s"]}
    return out


def memory_rows(contenders: list[dict], plans: dict) -> list[dict]:
    """Each shipsft contender's measured peak against `shipsft plan`'s peak for its config."""
    rows = []
    for c in contenders:
        if c["tool"] != "shipsft" or c.get("status") != "ok" or c["name"] not in plans:
            continue
        p = plans[c["name"]]
        row = {"name": c["name"], "measured_peak": c["memory"]["measured_peak"], "plan_status": p["status"]}
        if p["status"] == "ok":
            row.update(planned_peak=p["peak"], moment=p["moment"],
                       error=(p["peak"] - row["measured_peak"]) / row["measured_peak"])
        else:
            row["plan_error"] = p.get("error")
        rows.append(row)
    return rows


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="folder for gpu-results.json ($OUT in a device call)")
    ap.add_argument("--carried", type=Path, help="the folder --prepare wrote (wheels, bitsandbytes, tokenizer)")
    ap.add_argument("--tokenizer", type=Path, help="tokenizer folder (default: <carried>/tokenizer, else the "
                    "llama-3.2-instruct fixture beside the checkout)")
    ap.add_argument("--dry-run", action="store_true", help="run every section on the CPU with a tiny model")
    ap.add_argument("--budget-s", type=float, default=450.0)
    ap.add_argument("--sections", nargs="*", choices=SECTIONS, default=SECTIONS)
    ap.add_argument("--contenders", nargs="*", choices=[c[0] for c in CONTENDERS], default=[c[0] for c in CONTENDERS])
    ap.add_argument("--warmup", type=int, help="warm-up steps per contender (default: 3 on a GPU, 1 dry)")
    ap.add_argument("--steps", type=int, help="timed steps per contender (default: 12 on a GPU, 2 dry)")
    ap.add_argument("--prepare", type=Path, metavar="DIR", help="download and trim the carried files into DIR")
    ap.add_argument("--worker", choices=["prepare", "numerics", "shipsft", "trl", "plan"], help=argparse.SUPPRESS)
    ap.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.worker:
        from bench.gpu import workers

        workers.main(a.worker, a.spec, a.result)
        return 0
    if a.prepare:
        return prepare_carry(a.prepare, a.tokenizer or TOKENIZER_FIXTURE)
    import torch

    if not a.dry_run and not torch.cuda.is_available():
        print(NO_CUDA.format(torch=torch.__version__), file=sys.stderr)
        return 2
    if a.out is None:
        print("bench/gpu/run.py: --out FOLDER is required (where gpu-results.json goes)", file=sys.stderr)
        return 2
    tokenizer = a.tokenizer or (a.carried / "tokenizer" if a.carried else TOKENIZER_FIXTURE)
    if not (tokenizer / "tokenizer.json").exists():
        print(f"bench/gpu/run.py: no tokenizer at {tokenizer}. Fix: --carried DIR from --prepare, or --tokenizer "
              "FOLDER", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shipsft-gpu-") as tmp:
        return bench(a, tokenizer, Path(tmp))


class Bench:
    """One run of the bench: the options, the budget, the work folder, the results so far and how workers start."""

    def __init__(self, a, tokenizer: Path, work: Path):
        self.a, self.work, self.budget = a, work, Budget(a.budget_s)
        self.setting = dict(SETTINGS["dry" if a.dry_run else "gpu"])
        self.setting.update({k: v for k, v in (("warmup", a.warmup), ("steps", a.steps)) if v is not None})
        self.device = "cpu" if a.dry_run else "cuda"
        self.out = res.new(a.dry_run, a.budget_s, " ".join(sys.argv), self.setting)
        self.model_dir, self.data = work / "model", work / "train.jsonl"
        self.common = {"device": self.device, "model_dir": str(self.model_dir), "tokenizer": str(tokenizer),
                       "words": self.setting["words"], "lora": LORA, "template_kwargs": TEMPLATE_KWARGS}
        self.chosen = [c for c in CONTENDERS if c[0] in a.contenders]
        self.configs: dict[str, Path] = {}
        self.paths = {"base": [], "liger": []}

    def save(self, done: str | None = None, status: str | None = None) -> None:
        res.write(self.out, self.a.out / RESULTS)
        if done:  # a line per piece of work: what the device tool's output tail shows if the call is cut short
            print(f"[{self.budget.clock() - self.budget.start:4.0f} s] {done}: {status}", flush=True)

    def env(self, liger: bool) -> dict:
        return worker_env(self.paths["base"] + (self.paths["liger"] if liger else []))

    def carry(self) -> None:
        c = self.a.carried
        t0 = time.perf_counter()
        self.paths = install_carried(c, self.work)
        self.out["carried"] = {"dir": str(c), "bytes": tree_bytes(c), "install_s": time.perf_counter() - t0,
                               "wheels": sorted(w.name for w in (c / "whl").glob("*.whl")),
                               "bitsandbytes": "trimmed to " + ", ".join(BNB_KEEP) if (c / "bnb").exists()
                               else "not carried"}

    def prepare(self) -> dict | None:
        """The device, the matmul rate and the model; then the data and every shipsft contender's config."""
        prep = run_worker("prepare", {**self.common, "shape": self.setting["shape"]}, self.env(False),
                          self.budget.timeout(180) or self.budget.left(), self.work)
        self.out["sections"]["prepare"] = res.section(prep, ("env", "matmul", "model"))
        self.save("prepare", prep["status"])
        if prep["status"] != "ok":
            return None
        import yaml

        s = self.setting
        write_data(self.data, s["batch"] * (s["warmup"] + s["steps"] + 1), s["words"])  # +1: the run stops short
        for name, tool, method, _ in self.chosen:
            if tool == "shipsft":
                self.configs[name] = self.work / f"{name}.yaml"
                self.configs[name].write_text(yaml.safe_dump(shipsft_config(self.model_dir, self.data, method, s,
                                                                            self.work / "runs", name)))
        self.out["peaks"] = {"datasheet": peak_bf16(prep["env"].get("gpu", "")), "matmul": prep["matmul"]["flops"]}
        return prep

    def start_planner(self, memory: int | None):
        """`shipsft plan` on every shipsft config, in the background: it runs on the CPU (it traces activations on
        small copies of the model), beside the GPU work."""
        spec = {"device": self.device, "memory": memory,
                "configs": {k: str(v) for k, v in self.configs.items() if not k.endswith("chunked-ce")}}
        (self.work / "plan.spec.json").write_text(json.dumps(spec))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "plan", "--spec",
               str(self.work / "plan.spec.json"), "--result", str(self.work / "plan.result.json")]
        with open(self.work / "plan.log", "w") as log:
            return subprocess.Popen(cmd, env={**self.env(False), "OMP_NUM_THREADS": "4"}, cwd=REPO,
                                    stdout=subprocess.DEVNULL, stderr=log)

    def cuda_tests(self) -> None:
        t, t0 = self.budget.timeout(120), time.perf_counter()
        sec = run_cuda_tests(self.env(True), t, self.work) if t else res.skipped("time budget")
        self.out["sections"]["cuda_tests"] = {**sec, "seconds": time.perf_counter() - t0}
        self.save("cuda_tests", sec["status"])

    def numerics(self) -> None:
        t = self.budget.timeout(150)
        r = run_worker("numerics", {**self.common, "numerics_docs": self.setting["numerics_docs"]}, self.env(True),
                       t, self.work) if t else res.skipped("time budget")
        r["status"] = numerics_status(r)
        self.out["sections"]["numerics"] = r
        self.save("numerics", r["status"])

    def throughput(self, shape: Shape) -> None:
        s, rows = self.setting, []
        every = self.paths["base"] + self.paths["liger"]
        has = {m: findable(m, every) for m in ("trl", "liger_kernel", "bitsandbytes")}
        self.out["sections"]["throughput"] = sec = {"status": "ok", "contenders": rows, "ratios": {}}
        for name, tool, method, liger in self.chosen:
            row = {"name": name, "tool": tool, "method": method, "liger": liger}
            why, t = res.unavailable(tool, method, liger, has, self.device), self.budget.timeout(CONTENDER_CAP_S)
            if why or not t:
                row.update(res.skipped(why or "time budget"))
            else:
                spec = {**self.common, "name": name, "method": method, "liger": liger, "batch": s["batch"],
                        "lr": LR[method], "warmup": s["warmup"], "steps": s["steps"], "data": str(self.data),
                        "config": str(self.configs.get(name, ""))}
                row.update(run_worker(tool, spec, self.env(liger), t, self.work))
                if row["status"] == "ok":
                    row.update(rate(row, shape, method, self.out["peaks"]))
            rows.append(row)
            sec["ratios"], sec["status"] = ratios(rows), res.rollup([r["status"] for r in rows])
            self.save(name, row["status"] + (f" {row['trained_tok_s']:,.0f} trained tok/s" if row["status"] == "ok"
                                             else f" ({row.get('error') or row.get('why')})"))

    def plan(self, planner) -> None:
        try:
            planner.wait(timeout=max(self.budget.left(), 5))
        except subprocess.TimeoutExpired:
            planner.kill()
            planner.wait()
        path = self.work / "plan.result.json"
        log = last_line((self.work / "plan.log").read_text())
        p = json.loads(path.read_text()) if path.exists() else {"status": "error",
                                                                "error": f"the planner did not finish: {log}"}
        contenders = self.out["sections"].get("throughput", {}).get("contenders", [])
        rows = memory_rows(contenders, p.get("plans", {})) if p["status"] == "ok" else []
        sec = {"status": p["status"], "plans": p.get("plans", {}), "memory": rows}
        if p["status"] != "ok":
            sec["error"] = p["error"]
        elif rows:
            sec["status"] = res.rollup([r["plan_status"] for r in rows])
        else:
            sec.update(res.skipped("no shipsft contender finished, so there is no measured peak to compare"))
        self.out["sections"]["plan"] = sec
        self.save("plan", sec["status"])


def bench(a, tokenizer: Path, work: Path) -> int:
    b = Bench(a, tokenizer, work)
    if a.carried:
        try:
            b.carry()
        except subprocess.CalledProcessError as e:  # nothing of shipsft imports without the carried pydantic
            b.out["sections"]["prepare"] = {"status": "error", "error": f"installing {a.carried}/whl failed: "
                                            f"{last_line(e.stderr or '') or e}"}
            b.save("prepare", "error")
            print(res.summary(b.out))
            return 1
    prep = b.prepare()
    if prep is None:
        print(res.summary(b.out))
        return 1
    planner = b.start_planner(prep["env"].get("memory_bytes")) if "plan" in a.sections and b.configs else None
    if "cuda_tests" in a.sections:
        b.cuda_tests()
    if "numerics" in a.sections:
        b.numerics()
    if "throughput" in a.sections:
        b.throughput(Shape.of(SimpleNamespace(**prep["model"]["config"])))
    if planner is not None:
        b.plan(planner)
    b.out["wall_s"] = b.budget.clock() - b.budget.start
    b.save()
    print(res.summary(b.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
