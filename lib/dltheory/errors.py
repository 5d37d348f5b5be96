"""The errors the library raises for bad input: one hierarchy.

:class:`DLTheoryError` is the base of all of them. A value that is out of range,
non-finite, empty or mis-shaped is an :class:`InputError` (also a ``ValueError``); an
argument of the wrong type or dtype is an :class:`InputTypeError` (also a ``TypeError``).
The specific errors of the modules (``cpa.NotCPAError``, ``regions.RegionError``,
``infinite.InfiniteWidthError``, ``kernels.NotStructuredError``, ``profile.ProfileError``,
...) subclass :class:`InputError`, so ``except DLTheoryError`` catches every refusal and
``except ValueError`` keeps working. This module imports nothing.
"""

__all__ = ["DLTheoryError", "InputError", "InputTypeError"]


class DLTheoryError(Exception):
    """Base of every error the library raises for bad input."""


class InputError(DLTheoryError, ValueError):
    """A value that is out of range, non-finite, empty or mis-shaped."""


class InputTypeError(DLTheoryError, TypeError):
    """An argument of the wrong type or dtype."""
