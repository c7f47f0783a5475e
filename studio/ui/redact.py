"""Server paths out of what a shared deployment shows: every absolute path in a message or an
exported record becomes its last part (``/srv/models/flux`` → ``flux``), so a visitor learns
neither the folder layout nor where the store and the model folders are. URLs are left alone."""

from __future__ import annotations

import re
from typing import Any

# An absolute (or ~) path of two or more parts, not inside a word, a URL or a relative path.
_ABSOLUTE_PATH = re.compile(r"(?<![\w./~-])~?/(?:[^\s/'\"`]+/)+([^\s/'\"`,;)\]]*)")


def redact_paths(text: str) -> str:
    """``text`` with each absolute path replaced by its last part."""
    return _ABSOLUTE_PATH.sub(lambda match: match.group(1) or "…", text)


def redact(value: Any) -> Any:
    """A JSON-like value (dicts, lists, strings, numbers) with ``redact_paths`` applied to every
    string in it, keys included."""
    if isinstance(value, str):
        return redact_paths(value)
    if isinstance(value, dict):
        return {redact(k): redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value
