"""Benchmark plots are optional: matplotlib comes with the ``bench`` extra. Without it the plots
are skipped, and the caller says so with :data:`PLOTS_SKIPPED` instead of claiming them.

Example:
    >>> plt = pyplot()
    >>> plt is None or hasattr(plt, "subplots")
    True
"""

from __future__ import annotations

from typing import Any

#: Why plots were not written, and what installs them.
PLOTS_SKIPPED = "matplotlib is not installed; pip install \"rulerag[bench]\" installs it"


def pyplot() -> Any | None:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, or ``None`` when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt
