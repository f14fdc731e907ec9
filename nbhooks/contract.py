"""The row type of the adapter modules' ``CONTRACT`` tables (``_tf_internals``,
``views._widget_internals``): one private attribute of a foreign library that nbhooks relies
on. ``tests/test_tf_internals.py`` checks every row against the installed libraries."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Private"]


@dataclass(frozen=True, slots=True)
class Private:
    """One private attribute nbhooks relies on: where it lives and what it must be."""

    owner: str  #: the class (or module) it belongs to, as its library names it
    name: str  #: the attribute
    kind: str  #: what it must be (checked by the contract test)
    used_by: str  #: the function(s) of the adapter module that use it
