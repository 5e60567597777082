"""Conformance checks and fixtures for plug-ins: run them in your own test suite.

Each ``check_*`` function raises ``AssertionError`` (with a message saying which
contract broke) and returns ``None`` on success::

    from goose.testing import check_source, check_shaper, check_verifier

    def test_my_source():
        check_source(lambda: MySource())

The built-in sources, shapers and verifiers run these in goose's own tests. Three
parts: fixtures (toy target, random and oracle sources, random trees), conformance
checks, and statistics (the chi-square test of the law tests).
"""

from ._conformance import check_method, check_shaper, check_source, check_verifier
from ._fixtures import OracleSource, RandomSource, ToyTarget, grow_tree, random_streams, random_tree
from ._statistics import chi_square_pvalue

__all__ = [
    "OracleSource",
    "RandomSource",
    "ToyTarget",
    "check_method",
    "check_shaper",
    "check_source",
    "check_verifier",
    "chi_square_pvalue",
    "grow_tree",
    "random_streams",
    "random_tree",
]
