"""dltheory: the shared library of *Deep Network Theory, Verified*.

Modules (one per idea): ``claims`` (checked statements and their ledger), ``profile``
(scale profiles, device, dtype, seeding), ``data`` (synthetic and small real data sets),
``plot`` (the book's figure style), ``dynamics`` (training loops that record
trajectories), ``runner`` (execute a chapter outside the book build), ``notebooks`` (the
``.ipynb`` twins of the chapters) and ``sphinxext`` (the book's Sphinx extension).
"""

__version__ = "0.1.0"
