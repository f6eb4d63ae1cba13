"""The folder tree is the design: each package imports only the layers below it, and each DVC
stage's deps list exactly the kirinuki modules it runs (its import closure)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PKG = SRC / "kirinuki"

# what each part of src/kirinuki may import (besides itself); the README's layout says the same
ALLOWED = {
    "core": set(),
    "extract": {"core"},
    "assets": {"core", "extract"},  # quantize calibrates through extraction's own preprocessing
    "synth": {"core"},
    "train": {"core", "extract", "synth"},
    "quality": {"core"},
    "dataset": {"core"},
    "qc": {"core", "extract", "quality", "dataset"},  # bench times extraction; validate counts reviews
    "pipeline": {"core", "extract", "quality", "qc", "dataset"},
    "publish": {"core", "extract", "quality", "qc", "pipeline", "dataset"},
    "cli": {"core", "extract", "assets", "synth", "train", "quality", "qc", "pipeline", "publish", "dataset"},
}


def _module_file(name: str) -> Path | None:
    """kirinuki.a.b -> its file (a module, or a package's __init__), None if there is none."""
    base = SRC.joinpath(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _imports(path: Path, functions: set[str] | None = None) -> set[Path]:
    """Files of the kirinuki modules `path` imports: at module level, and inside its
    `functions` (None: all of them; lazy imports run only when their function does)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            nodes.extend(ast.walk(node))
        elif functions is None or node.name in functions:
            nodes.extend(ast.walk(node))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "kirinuki":
            for alias in node.names:  # `from kirinuki.pkg import module` names a module
                module = _module_file(f"{node.module}.{alias.name}")
                found.add((module, None) if module else (_module_file(node.module), alias.name))
        elif isinstance(node, ast.Import):
            found |= {(_module_file(a.name), None) for a in node.names if a.name.split(".")[0] == "kirinuki"}
    return found


def _closure(path: Path, functions: set[str] | None = None) -> set[Path]:
    """The files that run when `path` is imported and its `functions` are called: imports
    follow the names imported (`from m import f` runs m's module level and f's lazy imports)."""
    names: dict[Path, set[str] | None] = {}
    todo = [(path, functions)]
    while todo:
        f, fns = todo.pop()
        before = names.get(f, set())
        if f in names and (before is None or (fns is not None and fns <= before)):
            continue
        names[f] = None if fns is None or before is None else before | fns
        by_module: dict[Path, set[str] | None] = {}
        for module, name in _imports(f, names[f]):
            have = by_module.get(module, set())
            by_module[module] = None if name is None or have is None else have | {name}
        todo.extend(by_module.items())
    return set(names)


def _part(f: Path) -> str:
    rel = f.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_each_package_imports_only_the_layers_below_it():
    bad = []
    for f in sorted(PKG.rglob("*.py")):
        part = _part(f)
        if part == "__init__":
            continue
        for g, _ in _imports(f):
            other = _part(g)
            if other not in ({part, "__init__"} | ALLOWED[part]):
                bad.append(f"{f.relative_to(ROOT)} imports {g.relative_to(ROOT)}")
    assert not bad, "\n".join(bad)
    assert {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()} | {"pipeline", "cli"} \
        == set(ALLOWED)


def _cli_command_function(command: str) -> str:
    """The function in cli.py that implements `kirinuki <command>`."""
    text = (PKG / "cli.py").read_text(encoding="utf-8")
    for m in re.finditer(r'@app\.command\((?:"([\w-]+)")?\)\ndef (\w+)\(', text):
        if (m[1] or m[2]) == command:
            return m[2]
    raise AssertionError(f"kirinuki {command}: no such command in cli.py")


def _stage_entry(cmd: str) -> set[Path]:
    """The kirinuki files a stage's command runs."""
    m = re.fullmatch(r"python (stages/\w+\.py)", cmd)
    if m:
        return _closure(ROOT / m[1]) - {ROOT / m[1]}
    m = re.fullmatch(r"kirinuki ([\w-]+)", cmd)
    assert m, f"unexpected stage command {cmd!r}"
    return _closure(PKG / "cli.py", {_cli_command_function(m[1])})


def test_dvc_stage_deps_are_the_modules_each_stage_runs():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    problems = []
    for name, stage in stages.items():
        runs = {f.relative_to(ROOT).as_posix() for f in _stage_entry(stage["cmd"])}
        listed = {d for d in stage.get("deps", []) if d.startswith("src/") and d.endswith(".py")}
        if missing := runs - listed:
            problems.append(f"{name}: deps miss {sorted(missing)}")
        if extra := listed - runs:
            problems.append(f"{name}: deps list {sorted(extra)}, which it does not run")
        m = re.fullmatch(r"python (stages/\w+\.py)", stage["cmd"])
        if m and m[1] not in stage["deps"]:
            problems.append(f"{name}: deps miss its entry {m[1]}")
    assert not problems, "\n".join(problems)
