"""One progress bar for every long loop of the library (tqdm's, notebook-aware)."""
from __future__ import annotations


def progress_bar(items, desc: str, enabled: bool = True, total: int | None = None):
    """`items` wrapped in a tqdm bar (a widget in Jupyter, text in a terminal), or as they are."""
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, total=total)
