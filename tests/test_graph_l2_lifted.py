"""The slow sweep of tests/test_graph_l2.py over graphs lifted whole (residual blocks, DAGs), in a file of
its own: CI distributes tests by file, and with the pooled and tail sweeps it made one worker's queue the
slow run's critical path (154 graphs; 304 before the carry-free l2-opt made each about 1.8 s on CI)."""
from __future__ import annotations

import pytest

from test_graph_l2 import _check, _residual_or_dag


@pytest.mark.slow
def test_lifted_graphs_never_below_enumerated_fgl_many():
    _check(list(range(4, 10)) + list(range(2000, 2150)), _residual_or_dag)
