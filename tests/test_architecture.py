"""The arrows between shipsft's parts (docs/architecture.md), enforced on every import, lazy ones included.

Allowed graph (a part may import the parts listed after it; everything may import `config` and `errors`):

    cli      -> everything            nothing imports cli/ (only `python -m shipsft`, i.e. __main__)
    train    -> data, audit, model, eval, runs, report, export (the end-of-training export, output.export)
    export   -> data, model, eval, runs   merge, GGUF, parity check, model card, chat; never train/ or cli/
    recipe   -> data, model, train     `shipsft init`: measures data, resolves autos with train/recipe.py
    sweep    -> train, runs, model, eval, data, report   sweeps (run configs through train/), memory planner
    audit    -> data, train.schedule, train.recipe   (the step arithmetic, asked of train/ not re-derived)
    eval     -> data, model            never train/, runs/, cli/: returns numbers, writes no files
    data     -> (config, errors)       never train/, eval/, audit/, runs/, model/, cli/
    model    -> (config, errors)
    runs     -> (config, errors)       the only owner of the run folder
    report   -> (config, errors)       renders HTML from data handed to it
    config   -> errors                 nothing else of shipsft
    errors   -> (nothing)

Rules are read from the AST of every module under src/shipsft, so an import inside a function counts as much as one
at the top. The leaves the audit pulls in (train.schedule, train.recipe, train.batches) import only config, errors and each other.
"""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "shipsft"
BASE = {"config", "errors"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": {"errors"},
    "data": BASE,
    "model": BASE,
    "runs": BASE,
    "report": BASE,
    "eval": BASE | {"data", "model"},
    "audit": BASE | {"data", "train.schedule", "train.recipe"},
    "train": BASE | {"data", "audit", "model", "eval", "runs", "report", "export"},
    # export reads a run folder (runs), rebuilds its rendering (data), merges (model), generates (eval); train calls
    # it at the end of training, so it never imports train
    "export": BASE | {"data", "model", "eval", "runs"},
    "recipe": BASE | {"data", "model", "train"},  # shipsft init: data facts + train/recipe.py's resolve_auto
    "cli": BASE | {"data", "audit", "model", "train", "eval", "runs", "report", "export", "recipe", "sweep", "cli",
                  "__init__"},
    # sweep builds configs, runs them through train/, reads run folders through runs/, plans memory with model/
    "sweep": BASE | {"train", "runs", "model", "eval", "data", "report"},
    "__main__": {"cli"},
    "__init__": set(),
}
# the step arithmetic the audit (and shipsft init) ask train/ for: leaves that import only config and each other
LEAVES = {"train.batches": BASE, "train.schedule": BASE | {"train.batches"}, "train.recipe": BASE | {"train.batches"}}
ALLOWED.update(LEAVES)


def part_of(module: str) -> str:
    """shipsft.data.render -> data; shipsft.config -> config; shipsft -> __init__; train.schedule kept apart."""
    parts = module.split(".")[1:]
    if not parts or parts[0].startswith("__"):  # `from shipsft import __version__` reads shipsft/__init__.py
        return "__init__"
    if parts[0] == "train" and len(parts) > 1 and f"train.{parts[1]}" in LEAVES:
        return f"train.{parts[1]}"
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
            if tgt_part == src_part or (tgt_part in LEAVES and (src_part == "train" or "train" in allowed)):
                continue
            if tgt_part not in allowed:
                found.append(f"{path.relative_to(root.parent)}:{line}: {src_part} -> {tgt_part} ({target})")
    return found


def test_every_import_follows_the_allowed_graph():
    assert violations() == []


def test_every_part_says_what_it_owns_and_may_import():
    for part in ("cli", "data", "audit", "model", "train", "eval", "runs", "report", "export", "recipe", "sweep"):
        doc = ast.get_docstring(ast.parse((SRC / part / "__init__.py").read_text()))
        assert doc and "import" in doc, f"{part}/__init__.py needs a docstring saying what it may import"


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
