"""A PARROT filter job's kept and rejected rationales, a page at a time, as HTML rows for the
Training tab: each pair's images beside its label, the preference re-predicted from the
rationale's own scores, and the kept critique or the rejection reason.

Pages are read by seeking to line offsets (indexed once per file version), so a file of many
thousands of rationales is not parsed whole for every page. Images are inlined as small PNG
data URIs: the page needs no file access to the run folder.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from models.errors import InvalidInputError, NotFoundError
from models.types import task_dimensions
from studio.parrot.filter import KEPT_FILE, REJECTED_FILE
from studio.parrot.rationale import Rationale, SideText

FILTER_KIND = "parrot-filter"
FILES = {"kept": KEPT_FILE, "rejected": REJECTED_FILE}
PAGE_SIZE = 8
THUMB_PX = 192  # thumbnails are at most this large, and shown SHOWN_PX wide (small ones pixelated)
SHOWN_PX = 128

#: What each rejection reason of ``studio.parrot.filter`` means, for a person.
REASON_TEXT = {
    "teacher_failed": "the teacher gave no answer for an image",
    "malformed": "a critique did not parse",
    "parser_warnings": "the parser had to repair a critique or found something missing",
    "no_score": "a critique has no score that counts",
    "tie_dropped": "tie labels are dropped",
    "both_bad_dropped": "both-bad labels are dropped",
    "scores_disagree": "its own scores re-predict another preference than the label",
    "rejudge_failed": "the second critic gave no verdict",
    "rejudge_disagrees": "the second critic, not shown the label, disagrees with it",
    "over_sample_limit": "the pair already has its kept rationales",
}


@dataclass
class RationalePage:
    """One page of a rationale file: its rationales, the (clamped) page number, pages, rows."""

    rationales: list[Rationale]
    page: int
    pages: int
    total: int


def filter_files(job: dict[str, Any]) -> dict[str, Path] | None:
    """``{"kept": path, "rejected": path}`` of a PARROT filter job's run folder; ``None`` for other kinds."""
    if job.get("kind") != FILTER_KIND or not job.get("folder"):
        return None
    return {name: Path(job["folder"]) / file for name, file in FILES.items()}


class _LineIndex:
    """Byte offsets of the non-empty lines of files, kept per (size, modification time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[Path, tuple[tuple[int, int], list[int]]] = {}

    def offsets(self, path: Path) -> list[int]:
        stat = path.stat()
        version = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            known = self._known.get(path)
            if known is not None and known[0] == version:
                return known[1]
        offsets, at = [], 0
        with path.open("rb") as lines:
            for line in lines:
                if line.strip():
                    offsets.append(at)
                at += len(line)
        with self._lock:
            self._known[path] = (version, offsets)
        return offsets


_INDEX = _LineIndex()


def read_page(path: Path, page: int, size: int = PAGE_SIZE) -> RationalePage:
    """Page ``page`` (1-based, clamped to the pages there are) of the rationale file ``path``.

    Raises ``NotFoundError`` when the file does not exist (yet) and ``InvalidInputError`` naming
    the line of a record that is not a rationale."""
    if not path.is_file():
        raise NotFoundError(f"No rationale file at {path} (yet).")
    offsets = _INDEX.offsets(path)
    pages = max(1, math.ceil(len(offsets) / size))
    page = min(max(1, int(page)), pages)
    start = (page - 1) * size
    rationales = []
    with path.open("rb") as lines:
        for number, offset in enumerate(offsets[start:start + size], start=start + 1):
            lines.seek(offset)
            try:
                rationales.append(Rationale.from_dict(json.loads(lines.readline())))
            except (ValueError, InvalidInputError) as e:
                raise InvalidInputError(f"{path.name} record {number}: {e}") from e
    return RationalePage(rationales, page, pages, len(offsets))


def page_html(found: RationalePage, folder: Path, which: str) -> str:
    """The page as an HTML table: images | request, label, re-predicted | critiques or reason."""
    if not found.rationales:
        return f"<p class='rationale-empty'>No {which} rationales.</p>"
    rows = "".join(_row(r, folder, which) for r in found.rationales)
    return (f"<p class='rationale-count'>{which.capitalize()}: {found.total} rationale(s), page {found.page} of "
            f"{found.pages}.</p><table class='rationales'><thead><tr><th>Images</th><th>Pair</th>"
            f"<th>{'Critique' if which == 'kept' else 'Why rejected'}</th></tr></thead><tbody>{rows}</tbody></table>")


def _row(rationale: Rationale, folder: Path, which: str) -> str:
    predicted = rationale.extra.get("predicted")
    pair = (f"<b>{_e(rationale.pair_id)}</b> ({_e(rationale.task)})<br><i>{_e(rationale.prompt)}</i><br>"
            f"Label: <b class='rationale-label'>{_e(rationale.label)}</b><br>"
            f"Re-predicted: <b class='rationale-predicted'>{_e(predicted or '—')}</b>")
    detail = _side_html("A", rationale.a, rationale.task) + _side_html("B", rationale.b, rationale.task)
    if which != "kept":
        reason = str(rationale.extra.get("reason") or "")
        detail = f"<p class='rationale-reason'><b>{_e(reason)}</b>: {_e(REASON_TEXT.get(reason, ''))}</p>" + detail
    images = "".join(_image_html(key, folder, rationale) for key in ("source", "a", "b") if rationale.images.get(key))
    top = "vertical-align:top; padding:6px"
    return (f"<tr class='rationale-row'><td class='rationale-images' style='{top}'>{images}</td>"
            f"<td style='{top}'>{pair}</td><td style='{top}'>{detail}</td></tr>")


def _side_html(name: str, side: SideText, task: str) -> str:
    """One image's critique: scores and summary, the justifications folded; or its failure."""
    if side.failure is not None or side.parsed is None:
        raw = f"<details><summary>raw text</summary><pre>{_e(side.raw or '')}</pre></details>" if side.raw else ""
        return f"<p><b>{name}</b>: {_e(side.failure or 'no critique')}</p>{raw}"
    parsed = side.parsed
    scores = parsed.get("scores") or {}
    dimensions = task_dimensions(task)  # type: ignore[arg-type]
    shown = " · ".join(f"{d.heading} {_score(scores.get(d.key))}" for d in dimensions)
    overall = parsed.get("overall")
    texts = parsed.get("justifications") or {}
    justifications = "".join(f"<li>{_e(d.heading)}: {_e(texts[d.key])}</li>" for d in dimensions if d.key in texts)
    return (f"<p><b>{name}</b> (overall {_score(overall)}): {_e(shown)}<br>{_e(parsed.get('summary') or '')}</p>"
            f"<details><summary>justifications</summary><ul>{justifications}</ul></details>")


def _image_html(key: str, folder: Path, rationale: Rationale) -> str:
    label = {"a": "A", "b": "B", "source": "source"}[key]
    chosen = " rationale-chosen" if label == rationale.label else ""
    path = folder / str(rationale.images[key])
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except (OSError, ValueError):
        return (f"<figure class='rationale-image' style='display:inline-block; margin:2px'><figcaption>{label}: "
            f"missing ({_e(path.name)})</figcaption></figure>")
    image.thumbnail((THUMB_PX, THUMB_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    frame = "#2e9d4f" if chosen else "transparent"
    return (f"<figure class='rationale-image{chosen}' style='display:inline-block; margin:2px; text-align:center; "
            f"border:3px solid {frame}'><img src='{uri}' alt='image {label}' width='{SHOWN_PX}' "
            f"style='image-rendering: pixelated'><figcaption>{label}</figcaption></figure>")


def _score(value: Any) -> str:
    return "N/A" if value is None else f"{float(value):.2f}"


def _e(text: object) -> str:
    return html.escape(str(text))
