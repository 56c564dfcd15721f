"""The README's quickstart, run as a new user runs it: a fresh clone, the command under `<!-- quickstart:train -->`
exactly as written, timed, with its peak memory and its console output kept.

    python bench/quickstart.py                                        # prints the summary, keeps nothing
    python bench/quickstart.py --json bench/results/quickstart.json   # the file README.md's figures come from

The clone is of this repository's HEAD (committed files only, as `git clone` gives a user), into a temporary folder.
The command is split at its last `&&` into the install (venv, torch, shipsft, the embedded model) and the
`shipsft train` that follows it; each runs under `/usr/bin/time -v`, so the peak RSS is that part's own largest
process (the kernel's maxrss), never pip's counted as training's. Wall times: each part and both together. The
train part's stdout and stderr are kept as the console a user sees (the terminal width is set to 100 columns with
COLUMNS). Exit status non-zero when the quickstart fails.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- quickstart:train -->"


def readme_command(readme: Path) -> str:
    """The line of the bash block under the quickstart marker (what .ci/run does for the test command)."""
    text = readme.read_text(encoding="utf-8")
    block = re.search(re.escape(MARKER) + r"\n```bash\n(.+?)\n```", text)
    if not block:
        raise SystemExit(f"{readme}: no ```bash block under {MARKER}")
    return block.group(1).strip()


def timed(command: str, cwd: Path, env: dict) -> dict:
    """Run `command` in bash under /usr/bin/time -v: wall seconds, peak RSS (GB), exit status, console output."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as stats:
        t0 = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-v", "-o", stats.name, "bash", "-c", command], cwd=cwd, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wall = time.perf_counter() - t0
        usage = stats.read()
    kb = re.search(r"Maximum resident set size \(kbytes\): (\d+)", usage)
    return {"command": command, "exit_status": done.returncode, "wall_s": wall,
            "peak_rss_gb": int(kb.group(1)) * 1024 / 1e9 if kb else None, "console": done.stdout}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the results file here (machine, date, command, both parts)")
    ap.add_argument("--keep", type=Path, help="clone into this folder and keep it (default: a temporary one)")
    args = ap.parse_args()

    command = readme_command(REPO / "README.md")
    install, _, train = command.rpartition(" && ")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="shipsft-quickstart-") as tmp:
        clone = args.keep or Path(tmp) / "shipsft"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(COLUMNS="100", PATH=os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                                        if ".venv" not in p))
        first = timed(install, clone, env)
        print(f"install: exit {first['exit_status']}, {first['wall_s']:.0f} s", flush=True)
        second = timed(f". .venv/bin/activate && {train}", clone, env) if first["exit_status"] == 0 else None
    ok = second is not None and second["exit_status"] == 0
    if second is not None:
        print(second["console"])
        print(f"shipsft train: exit {second['exit_status']}, {second['wall_s']:.0f} s, peak RSS "
              f"{second['peak_rss_gb']:.2f} GB; install + train {first['wall_s'] + second['wall_s']:.0f} s")
    else:
        print(first["console"][-3000:])
    if args.json:
        machine.write(args.json, {
            "readme_command": command, "commit": commit, "ok": ok, "columns": 100,
            "install": {k: v for k, v in first.items() if k != "console"},
            "train": {k: v for k, v in (second or {}).items() if k != "console"},
            "wall_s": first["wall_s"] + (second["wall_s"] if second else 0),
            "console": second["console"] if second else first["console"][-5000:]})
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
