"""Moved names stay importable from their old modules (one release) and are the same objects."""
import importlib

import pytest

MOVES = [  # (new module, old module, names)
    ("lipopt.slopes", "lipopt.polynomial", ["SlopeBox", "global_slopes"]),
    ("lipopt.slopes", "lipopt.domain", ["SlopeBox", "slope_box", "count_fixed", "local_slopes"]),
]


@pytest.mark.parametrize("new, old, names", MOVES)
def test_old_paths_reexport_the_moved_objects(new, old, names):
    new_mod, old_mod = importlib.import_module(new), importlib.import_module(old)
    for name in names:
        assert getattr(old_mod, name) is getattr(new_mod, name), f"{old}.{name}"


def test_unknown_names_still_fail():
    import lipopt.domain
    with pytest.raises(AttributeError):
        lipopt.domain.no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        exec("from lipopt.domain import no_such_name")
