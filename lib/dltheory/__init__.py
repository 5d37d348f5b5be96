"""dltheory: the shared library of *Deep Network Theory, Verified*.

Modules (one per idea): ``nets`` (CPA architectures), ``cpa`` (the spline view: exact
affine maps and activation codes), ``regions`` (exact linear regions on segments and
planes), ``landscape`` (the loss as an exact quadratic in one layer's parameters),
``spectra`` (eigenvalues, singular values, matrix-free spectra, perturbation bounds),
``kernels`` (empirical NTK, path kernel, and, from ``infinite``, the infinite-width
NNGP/NTK recursions), ``dynamics`` (training loops that record
trajectories), ``claims`` (checked statements and their ledger), ``profile`` (scale
profiles, device, dtype, seeding), ``threads`` (a fair share of a shared CPU for the hot
paths), ``data`` (synthetic and small real data sets),
``plot`` (the book's figure style), ``stats`` (fits and intervals), ``prose`` (numbers
glued into the text), ``runner`` (execute a chapter outside the book build),
``notebooks`` (the ``.ipynb`` twins of the chapters) and ``sphinxext`` (the book's Sphinx
extension)."""

__version__ = "0.2.0"
