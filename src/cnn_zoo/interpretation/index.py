"""`index.html`: every figure of an explain run beside the input's prediction and its probability."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Entry:
    """One input of the run: what it is, what the model said, and the files made for it."""

    name: str
    source: str
    predicted: str
    probability: float
    true: str | None = None
    figures: list[Path] = field(default_factory=list)  # PNGs, shown side by side
    fragments: list[str] = field(default_factory=list)  # ready HTML (highlighted words)
    notes: list[str] = field(default_factory=list)  # one line each (the attribution's completeness error)


STYLE = (
    "body{font-family:sans-serif;margin:1.5em}section{border-top:1px solid #ccc;padding:.6em 0}"
    ".figures{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}.figures img{max-width:100%;height:auto}"
    ".tokens{max-width:70em}"
)


def write_index(folder: Path, title: str, entries: list[Entry], header: list[str] | None = None) -> Path:
    """`folder/index.html` referencing every figure of `entries` by its path relative to `folder`."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"]
    parts.append(f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>")
    parts += [f"<p>{html.escape(line)}</p>" for line in header or []]
    for entry in entries:
        truth = f", true class <b>{html.escape(entry.true)}</b>" if entry.true is not None else ""
        parts.append(
            f"<section><h2>{html.escape(entry.name)}</h2><p>{html.escape(entry.source)}</p>"
            f"<p>predicted <b>{html.escape(entry.predicted)}</b> with probability <b>{entry.probability:.3f}</b>"
            f"{truth}</p>"
        )
        parts += [f"<p><small>{html.escape(note)}</small></p>" for note in entry.notes]
        parts += entry.fragments
        parts.append("<div class='figures'>")
        for figure in entry.figures:
            relative = html.escape(Path(figure).resolve().relative_to(folder.resolve()).as_posix())
            parts.append(f"<a href='{relative}'><img src='{relative}' alt='{relative}'></a>")
        parts.append("</div></section>")
    parts.append("</body></html>")
    path = folder / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
