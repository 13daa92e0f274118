"""Plain-text tables and report files, shared by the comparison and the benchmark reports."""

from __future__ import annotations

import math
import os
from typing import Any


def num(x: float | None, fmt: str) -> str:
    """``x`` formatted with ``fmt``, or ``-`` when it is missing or not finite."""
    return "-" if x is None or not math.isfinite(x) else format(x, fmt)


def table(header: list[str], rows: list[list[str]], *, text_last: bool = False) -> list[str]:
    """The lines of an aligned table: the header, a rule, then the rows. The first column is
    left-aligned, the others right-aligned, except the last with ``text_last`` (free text)."""
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        last = len(cells) - 1
        return "  ".join(
            c.ljust(w) if i == 0 else c if text_last and i == last else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def write_files(
    directory: str, figures: dict[str, Any], texts: dict[str, str], *, dpi: int
) -> list[str]:
    """Save ``figures`` (file name: matplotlib figure) and ``texts`` (file name: content) into
    ``directory``, created if needed; return the paths written, figures first."""
    os.makedirs(directory, exist_ok=True)
    written = []
    for filename, fig in figures.items():
        fig.savefig(os.path.join(directory, filename), dpi=dpi)
        written.append(os.path.join(directory, filename))
    for filename, content in texts.items():
        with open(os.path.join(directory, filename), "w", encoding="utf-8") as f:
            f.write(content + "\n")
        written.append(os.path.join(directory, filename))
    return written
