"""The arrows between shipsft's parts (docs/architecture.md), enforced on every import, lazy ones included.

Allowed graph (a part may import the parts listed after it; everything may import `config` and `errors`):

    cli      -> everything            nothing imports cli/ (only `python -m shipsft`, i.e. __main__)
    train    -> data, steps, audit, model, eval, runs, report, export (the end-of-training export, output.export)
    sweep    -> train, steps, runs, model, eval, data, report   sweeps (run configs through train/), memory planner
    export   -> data, model, eval, runs   merge, GGUF, parity check, model card, chat; never train/ or cli/
    recipe   -> data, steps, model     `shipsft init`: measures data, resolves autos with steps/resolve.py
    traces   -> data, audit            `shipsft suite build`: suites from production traces; writes no files
    audit    -> data, steps            pure checks; the run resolved as training resolves it
    eval     -> data, model            never train/, runs/, cli/: returns numbers, writes no files
    data     -> (config, errors)       never train/, eval/, audit/, runs/, model/, cli/
    steps    -> (config, errors)       step arithmetic on token lengths: a leaf
    model    -> (config, errors)
    runs     -> (config, errors)       the only owner of the run folder
    report   -> (config, errors)       renders HTML from data handed to it
    config   -> errors                 nothing else of shipsft
    errors   -> (nothing)

Rules are read from the AST of every module under src/shipsft, so an import inside a function counts as much as one
at the top. There is no special case: a part is a folder (or config.py / errors.py), and the graph has no cycle.
"""
from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "shipsft"
MAP = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
BASE = {"config", "errors"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": {"errors"},
    "data": BASE,
    "steps": BASE,
    "model": BASE,
    "runs": BASE,
    "report": BASE,
    "eval": BASE | {"data", "model"},
    "audit": BASE | {"data", "steps"},
    "train": BASE | {"data", "steps", "audit", "model", "eval", "runs", "report", "export"},
    # export reads a run folder (runs), rebuilds its rendering (data), merges (model), generates (eval); train calls
    # it at the end of training, so it never imports train
    "export": BASE | {"data", "model", "eval", "runs"},
    "recipe": BASE | {"data", "steps", "model"},  # shipsft init: data facts + steps/resolve.py
    "traces": BASE | {"data", "audit"},  # shipsft suite build: formats + the audit's MinHash and leak tests
    "cli": BASE | {"data", "steps", "audit", "model", "train", "eval", "runs", "report", "export", "recipe", "sweep",
                  "traces", "cli", "__init__"},
    # sweep builds configs, runs them through train/, reads run folders through runs/, plans memory with model/
    "sweep": BASE | {"train", "steps", "runs", "model", "eval", "data", "report"},
    "__main__": {"cli"},
    "__init__": set(),
}


def part_of(module: str) -> str:
    """shipsft.data.render -> data; shipsft.config -> config; shipsft -> __init__."""
    parts = module.split(".")[1:]
    if not parts or parts[0].startswith("__"):  # `from shipsft import __version__` reads shipsft/__init__.py
        return "__init__"
    return parts[0]


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported shipsft module) for every import statement in the file, wherever it sits."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "shipsft"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = module.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "shipsft":
                continue
            for a in node.names:  # `from shipsft.train import schedule` imports shipsft.train.schedule
                out.append((node.lineno, f"{target}.{a.name}" if target.count(".") < 2 else target))
    return out


def violations(root: Path = SRC) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        src_part = part_of(module) if module != "shipsft.__main__" else "__main__"
        allowed = ALLOWED.get(src_part)
        if allowed is None:
            found.append(f"{path.relative_to(root.parent)}: part {src_part!r} is not in the allowed graph")
            continue
        for line, target in imports_of(path, module):
            tgt_part = part_of(target) if target != "shipsft" else "__init__"
            if tgt_part == src_part:
                continue
            if tgt_part not in allowed:
                found.append(f"{path.relative_to(root.parent)}:{line}: {src_part} -> {tgt_part} ({target})")
    return found


def test_every_import_follows_the_allowed_graph():
    assert violations() == []


def parts_on_disk(root: Path = SRC) -> set[str]:
    return {p.parent.name for p in root.glob("*/__init__.py")}


def test_every_part_says_what_it_owns_and_may_import():
    for part in sorted(parts_on_disk()):
        doc = ast.get_docstring(ast.parse((SRC / part / "__init__.py").read_text()))
        assert doc and "import" in doc, f"{part}/__init__.py needs a docstring saying what it may import"


def parts_in_map(text: str) -> dict[str, str]:
    """The parts table of docs/architecture.md: part -> its 'may import' cell."""
    rows = re.findall(r"^\| `(\w+)/` \|.*\| ([^|]*) \|$", text, flags=re.M)
    return {name: cell.strip() for name, cell in rows}


def map_problems(text: str, on_disk: set[str]) -> list[str]:
    """What docs/architecture.md's parts table gets wrong: a part on disk it does not list (or one it lists that is
    not on disk), and a row whose 'may import' cell names other parts than the import rule allows."""
    rows = parts_in_map(text)
    problems = [f"{p}/ is on disk but not in the map" for p in sorted(on_disk - set(rows))]
    problems += [f"{p}/ is in the map but not on disk" for p in sorted(set(rows) - on_disk)]
    for part, cell in rows.items():
        if part == "cli":
            if "everything" not in cell:
                problems.append(f"cli/: the map says {cell!r}, the rule: everything")
            continue
        named = set(re.findall(r"[a-z_]+", cell.split("(")[0])) - {"and", "only"}
        want = ALLOWED.get(part, set())
        if named != want:
            problems.append(f"{part}/: the map says it may import {sorted(named)}, the rule {sorted(want)}")
    return problems


def test_the_map_lists_every_part_with_its_arrows():
    """A new part, or a new arrow, fails here until docs/architecture.md says so."""
    assert map_problems(MAP.read_text(encoding="utf-8"), parts_on_disk()) == []


def test_the_map_test_can_fail():
    text = MAP.read_text(encoding="utf-8")
    rows = parts_in_map(text)
    dropped = re.sub(r"^\| `steps/` \|.*\n", "", text, flags=re.M)
    widened = text.replace(f"| {rows['audit']} |", f"| {rows['audit']}, train |")
    assert map_problems(dropped, parts_on_disk()) == ["steps/ is on disk but not in the map"]
    assert map_problems(widened, parts_on_disk()) == [
        f"audit/: the map says it may import {sorted(ALLOWED['audit'] | {'train'})}, the rule "
        f"{sorted(ALLOWED['audit'])}"]
    assert map_problems(text, parts_on_disk() | {"newpart"}) == ["newpart/ is on disk but not in the map"]


def cycles(root: Path = SRC) -> list[str]:
    """Parts that reach themselves through the imports actually made between parts (folder level)."""
    edges: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        module = module_name(path, root)
        src_part = part_of(module) if module != "shipsft.__main__" else "__main__"
        for _, target in imports_of(path, module):
            tgt = part_of(target) if target != "shipsft" else "__init__"
            if tgt != src_part:
                edges.setdefault(src_part, set()).add(tgt)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    return sorted(p for p in edges if reaches(p, p, {p}))


def test_the_part_graph_has_no_cycle():
    assert cycles() == []


def test_a_planted_cycle_is_found(tmp_path):
    copy = tmp_path / "shipsft"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "steps" / "planted.py").write_text("def f():\n    from shipsft.audit.run import run_audit\n")
    assert cycles(copy) == ["audit", "steps"]


def test_a_forbidden_import_is_caught_even_inside_a_function(tmp_path):
    """The check itself can fail: plant forbidden arrows in a copy of the package and see them reported."""
    copy = tmp_path / "shipsft"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "data" / "planted.py").write_text("def f():\n    from shipsft.train.loop import fit\n    return fit\n")
    (copy / "eval" / "planted.py").write_text("from ..runs import layout\n")
    (copy / "config.py").write_text((copy / "config.py").read_text() + "\nimport shipsft.data.types\n")
    (copy / "model" / "planted.py").write_text("from shipsft.cli.console import say\n")
    found = violations(copy)
    assert any("data/planted.py:2: data -> train" in v for v in found), found
    assert any("eval/planted.py:1: eval -> runs" in v for v in found), found
    assert any("config.py" in v and "config -> data" in v for v in found), found
    assert any("model/planted.py:1: model -> cli" in v for v in found), found
    assert len(found) == 4
