"""The front door and the reference stay true: README.md is a front door (at most 250 lines, every command in its
table, the quickstart output pasted from bench/results/quickstart.json), the docs site builds strictly, every link
resolves, every config block validates, every shipsft command in a code block parses, and every measured number in
README.md and docs/ comes from a results file a bench script wrote under bench/results/.

A measured number is a number with a unit of measure (%, x, s, ms, min, GB, MiB, tok/s, GFLOP/s ...) in prose or a
table; a bound written with <, >, <= or >= is a target, not a measurement. Code blocks are commands, configs and
pasted output: the tests below parse the first two, and the quickstart's output is compared with its results file.
The paragraph, list or table a measured number sits in names its source in an HTML comment, which renders as nothing:

    <!-- source: bench/results/masks.json -->

Every named file must exist and record its machine and date; every measured number of the block, and every number
of a table's rows, must equal, at the precision it is written with, a number in one of its files (a share also as a
percentage: 0.947 is "94.7%").
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
UNIT = (r"%(?!\s?(?:CIs?\b|confidence|intervals?\b))|x\b|×(?!\s?\d)|s\b|ms\b|min\b|h\b|seconds?\b|minutes?\b|"
        r"hours?\b|GB\b|GiB\b|MB\b|MiB\b|KB\b|tok/s\b|tokens/s\b|examples/s\b|sequences/s\b|MB/s\b|GFLOP/s\b|"
        r"TFLOP/s\b|MFLOP\b|GFLOP\b|nats\b")
# a number starts after no word character, dot, dash, slash or comma (so "1,536" is one number), and not after a
# bound (<, >, ≤, ≥; an arrow "->" is no bound)
NUMBER = r"(?<![\w.\-/,])(?<![<≤≥]\s)(?<![^-]>\s)(?<![<≤≥])(?<![^-]>)([+-]?\d[\d,]*(?:\.\d+)?)"
MEASURED = re.compile(rf"{NUMBER}\s?(?:{UNIT})")
RANGE = re.compile(rf"{NUMBER}\s?[-–]\s?(\d[\d,]*(?:\.\d+)?)\s?(?:{UNIT})")  # 19-28%: both ends measured
ANY_NUMBER = re.compile(NUMBER + r"(?![\w])")
SOURCE = re.compile(r"<!--\s*source:\s*([^>]+?)\s*-->")
FENCE = re.compile(r"^ *```.*?^ *```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.M)


def blocks(text: str) -> list[str]:
    """Paragraphs, lists and tables: runs of lines between blank lines; fenced and indented code removed."""
    out = []
    for b in re.split(r"\n\s*\n", FENCE.sub("", text)):
        lines = [x for x in b.splitlines() if x.strip()]
        if lines and not all(x.startswith("    ") for x in lines):
            out.append(b)
    return out


def numbers_in(obj) -> list[float]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, (int, float)):
        return [float(obj)]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in numbers_in(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in numbers_in(v)]
    if isinstance(obj, str):  # numbers inside recorded strings (a transcribed table row, a console line)
        return [float(m.replace(",", "")) for m in re.findall(r"\d[\d,]*(?:\.\d+)?", obj)]
    return []


def matches(written: str, values: list[float]) -> bool:
    """The written number equals one of the values at the precision it is written with (or as a percentage)."""
    text = written.replace(",", "").lstrip("+-")
    decimals = len(text.split(".")[1]) if "." in text else 0
    want = float(text)
    tol = 0.5 * 10 ** -decimals + 1e-9
    return any(abs(abs(v) - want) <= tol or abs(abs(v) * 100 - want) <= tol for v in values)


def table_numbers(block: str) -> list[str]:
    """Every number in a table's rows (not its header or separator)."""
    rows = [x for x in block.splitlines() if x.lstrip().startswith("|")]
    return [n for row in rows[2:] for n in ANY_NUMBER.findall(INLINE_CODE.sub("", row))]


def source_problems(page: Path, text: str) -> list[str]:
    problems = []
    for block in blocks(text):
        plain = INLINE_CODE.sub("", SOURCE.sub("", block))
        found = MEASURED.findall(plain) + [n for pair in RANGE.findall(plain) for n in pair]
        names = [n.strip() for m in SOURCE.findall(block) for n in m.split(",")]
        first = block.strip().splitlines()[0][:80]
        if names:
            found += table_numbers(SOURCE.sub("", block))
        if not found:
            continue
        if not names:
            problems.append(f"{page.name}: measured numbers {found[:4]} without a source: {first!r}")
            continue
        values = []
        for name in names:
            path = REPO / name
            if not path.is_file():
                problems.append(f"{page.name}: source {name} does not exist")
                continue
            data = json.loads(path.read_text(encoding="utf-8"))
            if not (isinstance(data, dict) and data.get("machine") and data.get("date")):
                problems.append(f"{page.name}: {name} records no machine and date")
            values += numbers_in(data)
        problems += [f"{page.name}: {n} is in none of {names}: {first!r}" for n in found
                     if values and not matches(n, values)]
    return problems


def test_every_measured_number_names_its_source_and_equals_it():
    problems = [p for page in PAGES for p in source_problems(page, page.read_text(encoding="utf-8"))]
    assert problems == []


def test_the_number_check_can_fail(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"machine": "m", "date": "d", "x": {"share": 0.947, "s": 617.2},
                                                 "row": "| a | 12 | 3.5 |"}))
    rel = os.path.relpath(tmp_path / "r.json", REPO)
    ok = f"It scored 94.7% in 617 s.\n<!-- source: {rel} -->"
    assert source_problems(Path("p.md"), ok) == []
    assert "94.8" in source_problems(Path("p.md"), ok.replace("94.7%", "94.8%"))[0]
    assert "without a source" in source_problems(Path("p.md"), "It took 12 s.")[0]
    assert "90" in source_problems(Path("p.md"), ok.replace("94.7%", "90-94.7%"))[0]  # a range: its first end too
    assert "does not exist" in source_problems(Path("p.md"), "It took 12 s.\n<!-- source: bench/results/no.json -->")[0]
    table = f"| t | n | s |\n|---|---|---|\n| a | 12 | 3.5 |\n<!-- source: {rel} -->"
    assert source_problems(Path("p.md"), table) == []
    assert "13" in source_problems(Path("p.md"), table.replace("| 12 |", "| 13 |"))[0]  # a bare number in a row
    # commands, configs, targets and dimensions are not measurements
    not_measured = ("```\nshipsft train --set x=12s\n```\nlr 4e-4, r=16, 3 commands, in < 60 s, checked 4×1 and 2×2, "
                    "`--budget 450 s`, 576 -> 1,536, a 95% CI.\n\n    pip install x  # ~160 MB")
    assert source_problems(Path("p.md"), not_measured) == []


def _github_slug(heading: str) -> str:
    text = re.sub(r"[`*_]|<[^>]+>", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_links_resolve():
    """Relative links in README.md and docs/ point at files that exist; README's anchors (its own and into docs/)
    name a heading there (the site build checks the links between docs pages again, with their anchors)."""
    bad = []
    for page in PAGES:
        for target in LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            if not path.exists():
                bad.append(f"{page.name}: {target}")
            elif anchor and page == README and path.suffix == ".md":
                slugs = {_github_slug(h) for h in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8")))}
                if anchor not in slugs:
                    bad.append(f"{page.name}: {target} (no such heading)")
    assert bad == []


def test_the_docs_site_builds_strictly(tmp_path):
    """mkdocs.yml makes a missing page, a page left out of the nav, a broken link or anchor a warning, and --strict
    makes a warning fail the build."""
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").exists()
    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]
    assert "README.md" not in json.dumps(nav)


# ------------------------------------------------------------------------------------------------------------------
# code blocks: configs validate, commands parse


def fenced(text: str, langs: tuple[str, ...]) -> list[str]:
    found = re.finditer(r"^ *```(\w*)[^\n]*\n(.*?)^ *```", text, re.S | re.M)
    return [m.group(2) for m in found if m.group(1) in langs]


def test_every_yaml_block_is_a_valid_config():
    """Docs cannot drift from the schema: every ```yaml block in README.md and docs/ validates as a RunConfig, or,
    when it is a sweep file (it starts with `# sweep.yaml`), as a sweep spec."""
    from shipsft.config import RunConfig
    from shipsft.sweep.spec import SweepSpec

    checked = 0
    for page in PAGES:
        for block in fenced(page.read_text(encoding="utf-8"), ("yaml",)):
            try:
                (SweepSpec if block.startswith("# sweep.yaml") else RunConfig).model_validate(yaml.safe_load(block))
            except Exception as e:  # noqa: BLE001 - the page and the block's first line say which one
                pytest.fail(f"{page.name}: yaml block {block.splitlines()[0]!r}: {e}")
            checked += 1
    assert checked >= 5


def shipsft_commands(text: str) -> list[list[str]]:
    """The argument lists of every `shipsft ...` (or `torchrun ... -m shipsft ...`) command in a shell code block:
    `$ ` prompts and `\\` continuations joined, comments dropped, `&&` / `;` / `|` chains split. Output lines that
    mention a command ("next: shipsft train c.yaml") are not commands."""
    out = []
    for block in fenced(text, ("bash", "sh", "shell", "console", "")):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            for part in re.split(r"\s(?:&&|;|\|)\s", line.strip().removeprefix("$ ")):
                try:
                    words = shlex.split(part, comments=True)
                except ValueError:  # unbalanced quotes: prose or output, not a command
                    continue
                while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value shipsft ...
                    words = words[1:]
                if words[:1] == ["shipsft"]:
                    out.append(words[1:])
                elif words[:1] in (["torchrun"], ["accelerate"], ["python"], ["python3"]) and "-m" in words and \
                        words[words.index("-m") + 1:][:1] == ["shipsft"]:
                    out.append(words[words.index("-m") + 2:])
    return out


def parse_command(args: list[str]) -> str:
    """The command `shipsft ARGS` names, parsed by the CLI's own parser (typer's click), without running it."""
    import typer

    from shipsft.cli.main import app, bare_resume

    command = typer.main.get_command(app)
    ctx = command.make_context("shipsft", bare_resume(list(args)))
    names = []
    while hasattr(command, "resolve_command"):
        name, command, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        ctx = command.make_context(name, rest, parent=ctx)
        names.append(name)
    return " ".join(names)


def test_every_shipsft_command_in_the_docs_parses():
    problems, seen = [], set()
    for page in PAGES:
        for args in shipsft_commands(page.read_text(encoding="utf-8")):
            if args in (["--version"], ["--help"]):
                continue
            try:
                seen.add(parse_command(args))
            except Exception as e:  # noqa: BLE001 - typer's usage errors; the line says which command
                problems.append(f"{page.name}: shipsft {shlex.join(args)}: {e}")
    assert problems == []
    assert {"train", "init", "audit", "export", "eval"} <= seen


def test_a_mistyped_command_fails_to_parse():
    assert parse_command(["train", "c.yaml", "--resume"]) == "train"
    assert parse_command(["suite", "build", "t.jsonl", "--size", "40"]) == "suite build"
    for bad in (["train", "c.yaml", "--resumee"], ["trian", "c.yaml"], ["export"]):
        with pytest.raises(Exception):
            parse_command(bad)
    assert shipsft_commands("```bash\n$ shipsft eval RUN \\\n    --limit 8  # eight\ncd x && shipsft plan C | head\n"
                            "wrote c.yaml — next: shipsft train c.yaml\n```") == [["eval", "RUN", "--limit", "8"],
                                                                                  ["plan", "C"]]


# ------------------------------------------------------------------------------------------------------------------
# the README is a front door


def test_readme_is_a_front_door():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    # .ci/run runs the line after this marker: the CI is the README's own test command
    assert re.search(r"<!-- quickstart:test -->\n```bash\n.*pip install -e '\.\[test\]'.*python -m pytest\n```", text)
    assert "<!-- quickstart:train -->" in text


def test_the_readme_table_lists_every_command():
    import typer

    from shipsft.cli.main import app

    root = typer.main.get_command(app)
    names = [f"{n} {s}" if hasattr(c, "commands") else n for n, c in root.commands.items()
             for s in (getattr(c, "commands", None) or [""])]
    table = "\n".join(x for x in README.read_text(encoding="utf-8").splitlines() if x.startswith("| `shipsft"))
    missing = [n for n in names if f"`shipsft {n.strip()}" not in table]
    assert missing == []


def test_the_readme_quickstart_output_is_the_measured_one():
    """The output block under the quickstart is pasted from bench/results/quickstart.json (bench/quickstart.py ran
    the README's quickstart command and kept its console output)."""
    result = json.loads((REPO / "bench" / "results" / "quickstart.json").read_text(encoding="utf-8"))
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- quickstart:output -->\n```text\n(.*?)```", text, re.S)
    assert block, "README.md has no <!-- quickstart:output --> block"
    pasted = [x.rstrip() for x in block.group(1).splitlines() if x.strip() and x.strip() != "..."]
    console = [x.rstrip() for x in result["console"].splitlines()]
    assert pasted and all(x in console for x in pasted), [x for x in pasted if x not in console]
    assert result["readme_command"] in text and result["ok"]
