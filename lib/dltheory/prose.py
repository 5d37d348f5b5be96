"""Numbers quoted in a chapter's prose come from the computation, never typed by hand.

``prose.glue("rate", 0.886)`` stores a value for the book's ``{glue:text}`rate:.3f``` roles
(myst-nb). Outside a book build (e.g. in Colab, where myst-nb is absent) it does nothing:
the value is still in the notebook's variables.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def glue(name: str, value, *, display: bool = False) -> None:
    """Glue ``value`` (a number, string or figure) under ``name`` for the chapter's prose."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"glue {name!r}: only scalars are glued, got shape "
                            f"{tuple(value.shape)}")
        value = value.item()
    if isinstance(value, np.generic) and value.size == 1:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"glue {name!r}: refusing to quote a non-finite number ({value})")
    try:
        from myst_nb import glue as _glue
    except ImportError:  # pragma: no cover - outside the book toolchain
        return
    _glue(name, value, display=display)
