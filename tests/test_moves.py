"""Moved names stay importable from their old modules (one release) and are the same objects; the
relaxations import no certification code and no solver functions at module level (data flows one way)."""
import ast
import importlib
from pathlib import Path

import pytest

MOVES = [  # (new module, old module, names)
    ("lipopt.slopes", "lipopt.polynomial", ["SlopeBox", "global_slopes"]),
    ("lipopt.slopes", "lipopt.domain", ["SlopeBox", "slope_box", "count_fixed", "local_slopes"]),
    ("lipopt.certify.krivine", "lipopt.certify", ["Certificate", "certify_krivine", "UNIT_ROUNDOFF"]),
    ("lipopt.certify.gram", "lipopt.certify_sdp", ["certify_gram", "gram_matrix", "lambda_min_lower_bound",
                                                   "EigenBound", "GramCertificate"]),
    ("lipopt.relaxations.quadratic", "lipopt.certify_sdp", ["GramSystem"]),
    ("lipopt.rounding", "lipopt.certify_sdp", ["U", "gamma", "up", "down", "sum_up", "sum_down", "norm2_bound"]),
    ("lipopt.certify.moments", "lipopt.relaxations.moments", ["MomentCertificate", "certify_moments"]),
]


@pytest.mark.parametrize("new, old, names", MOVES)
def test_old_paths_reexport_the_moved_objects(new, old, names):
    new_mod, old_mod = importlib.import_module(new), importlib.import_module(old)
    for name in names:
        assert getattr(old_mod, name) is getattr(new_mod, name), f"{old}.{name}"


@pytest.mark.parametrize("module", ["lipopt.domain", "lipopt.relaxations.moments"])
def test_unknown_names_still_fail(module):
    mod = importlib.import_module(module)
    with pytest.raises(AttributeError):
        mod.no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        exec(f"from {module} import no_such_name")


RELAXATIONS = Path(importlib.import_module("lipopt.relaxations").__file__).parent
PROGRAM_TYPES = {"LinearProgram", "SemidefiniteProgram"}


def module_level_imports(path: Path):
    """(module, names) of the imports executed when the file is imported (not those inside functions)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            yield "." * node.level + (node.module or ""), [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [a.name]


@pytest.mark.parametrize("path", sorted(RELAXATIONS.glob("*.py")), ids=lambda p: p.name)
def test_relaxations_import_neither_certify_nor_solver_functions(path):
    for module, names in module_level_imports(path):
        tail = module.lstrip(".")
        assert not (tail.startswith("certify") or "lipopt.certify" in module), (path.name, module)
        if tail.startswith("solvers") or "lipopt.solvers" in module:
            assert set(names) <= PROGRAM_TYPES, (path.name, module, names)


def all_imports_outside_reexports(path: Path):
    """(module, names) of every import in the file, inside functions too, except the lazy one-release
    re-exports of a module ``__getattr__``."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "__getattr__"
            for n in ast.walk(f)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            yield "." * node.level + (node.module or ""), [a.name for a in node.names]


@pytest.mark.parametrize("path", sorted(RELAXATIONS.glob("*.py")), ids=lambda p: p.name)
def test_relaxations_never_solve_or_certify(path):
    """ARCHITECTURE step 4: relaxations build programs; methods solve and certify them (not even a
    function-local import of a solver or certifier in relaxations/)."""
    for module, names in all_imports_outside_reexports(path):
        tail = module.lstrip(".")
        assert not (tail.startswith("certify") or "lipopt.certify" in module), (path.name, module)
        if tail.startswith("solvers") or "lipopt.solvers" in module:
            assert set(names) <= PROGRAM_TYPES, (path.name, module, names)
