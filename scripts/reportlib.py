"""What the study reports (scripts/study-report.py, scripts/study2-report.py) read the
same way: numbers from hkd-analyze's CSVs and `mean ± std` cells. Standard library only."""

import math
import sys
from pathlib import Path

PROG = Path(sys.argv[0]).stem


def die(msg):
    sys.exit(f"{PROG}: {msg}")


def num(row, col):
    """The float in `col`, or None when the column is absent, empty or NaN."""
    v = row.get(col, "")
    if v is None or v == "":
        return None
    try:
        x = float(v)
    except ValueError:
        die(f"column `{col}` holds `{v}`, expected a number")
    return None if math.isnan(x) else x


def mean_std(row, base, scale=1.0, digits=3):
    """`mean ± std` of the columns `base_mean` and `base_std` (scaled), or – when absent."""
    m, s = num(row, base + "_mean"), num(row, base + "_std")
    if m is None:
        return "–"
    text = f"{m * scale:.{digits}f}"
    if s is not None:
        text += f" ± {s * scale:.{digits}f}"
    return text
