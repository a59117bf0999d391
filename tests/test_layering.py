"""The floors of the package (DESIGN.md): imports go downward only, without circles, without
function-level imports of pegan modules (which would hide a circle), and nothing inside pegan
imports pegan.api or pegan.cli. Read from the source with ``ast``: nothing is imported."""

import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "pegan"

# lower numbers are lower floors; a module may import its own floor or lower ones
FLOORS = {
    "pegan.errors": 0, "pegan": 0, "pegan._extras": 0,
    "pegan.encodings": 1, "pegan.ops": 1, "pegan.checks": 1,
    "pegan.compute": 2,
    "pegan.nn": 3,
    "pegan.models": 4,
    "pegan.configs": 5, "pegan.imageio": 5, "pegan.checkpoint": 5, "pegan.latent": 5,
    "pegan.convert": 6, "pegan.data": 6, "pegan.loading": 6,
    "pegan.train": 7, "pegan.eval": 7, "pegan.project": 7, "pegan.video": 7, "pegan.explore": 7,
    "pegan.demo": 8,
    "pegan.api": 9,
    "pegan.cli": 10,
}
LAZY_OK = {"pegan.cli"}   # the command line imports each subcommand's code when it runs (fast --help)


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def floor(name: str) -> int:
    best = None
    for prefix, f in FLOORS.items():
        if (name == prefix or (prefix != "pegan" and name.startswith(prefix + "."))) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, f)
    assert best is not None, f"{name} has no floor in tests/test_layering.py"
    return best[1]


def pegan_imports(tree: ast.Module, name: str):
    """(imported module, line, at module level?) for every import of a pegan module."""
    out = []
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".")[:-node.level] if not name.endswith("__init__") else name.split(".")
                base = ".".join(pkg + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        targets = [t for t in targets if t == "pegan" or t.startswith("pegan.")]
        if not targets:
            continue
        p, top = parents.get(node), True
        while p is not None:
            if isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                top = False
            p = parents.get(p)
        for t in targets:
            out.append((t, node.lineno, top))
    return out


def modules():
    mods = {module_name(p): p for p in PKG.rglob("*.py")}
    return {n: p for n, p in mods.items()}


def resolve(target: str, known) -> str:
    """``pegan.ops.conv2d`` (a name imported from a module) -> ``pegan.ops``."""
    while target not in known and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


@pytest.fixture(scope="module")
def graph():
    mods = modules()
    edges = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        seen, out = set(), []
        for t, line, top in pegan_imports(tree, name):
            b = resolve(t, mods)
            if (b, line) not in seen and not (b == "pegan" and any(l == line and x != "pegan" for x, l, _ in
                                                                  pegan_imports(tree, name))):
                seen.add((b, line))
                out.append((b, line, top))
        edges[name] = out
    return mods, edges


def test_every_module_has_a_floor(graph):
    mods, _ = graph
    for name in mods:
        floor(name)


def test_imports_go_downward_only(graph):
    _, edges = graph
    bad = [f"{a} (floor {floor(a)}) imports {b} (floor {floor(b)}) at line {line}"
           for a, targets in edges.items() for b, line, _ in targets if floor(b) > floor(a)]
    assert not bad, "\n".join(bad)


def test_nothing_imports_the_api_or_the_cli(graph):
    _, edges = graph
    bad = [f"{a} imports {b} at line {line}" for a, targets in edges.items() for b, line, _ in targets
           if b in ("pegan.api", "pegan.cli") and a != "pegan.cli" and a != b]
    assert not bad, "\n".join(bad)


def test_no_function_level_imports_of_pegan_modules(graph):
    _, edges = graph
    bad = [f"{a} line {line}: import of {b} inside a function" for a, targets in edges.items()
           for b, line, top in targets if not top and a not in LAZY_OK]
    assert not bad, "\n".join(bad)


def test_no_import_circles(graph):
    mods, edges = graph
    adj = {a: sorted({b for b, _, top in t if top and b != a and b in mods}) for a, t in edges.items()}
    # a package's __init__ importing its submodules is not a circle with them
    for a in list(adj):
        adj[a] = [b for b in adj[a] if not a.startswith(b + ".") or (PKG.parent / (b.replace(".", "/"))).with_suffix(".py").exists()]
    state, cycles = {}, []

    def visit(n, stack):
        state[n] = 1
        stack.append(n)
        for m in adj.get(n, []):
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m, stack)
        stack.pop()
        state[n] = 2

    for n in sorted(adj):
        if n not in state:
            visit(n, [])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_violations(tmp_path):
    """The rules catch what they should: a function-level import and an upward import."""
    src = "import os\nfrom pegan.models import stylegan2\n\ndef f():\n    from pegan import api\n"
    found = pegan_imports(ast.parse(src), "pegan.ops.x")
    assert ("pegan.models", 2, True) in [(resolve(t, {"pegan.models": 1}), l, top) for t, l, top in found]
    assert any(t == "pegan" and not top for t, _, top in found)
    assert floor("pegan.models.stylegan2") > floor("pegan.ops.conv")
