"""What a long run keeps: Gradio's cache, the scratch folders of files we write for Gradio to
serve (exports, CSVs), and the page state Gradio holds per browser session.

Gradio copies every file an endpoint returns (and every upload) into its cache folder and, unless
told, never deletes it: over a long run the folder grows without bound. ``delete_cache`` makes
Gradio remove its copies older than an age (``--temp-max-minutes``); the originals we wrote are
ours to remove, which ``scratch_folder`` does each time it makes a new one. A handler that
answers an image widget with an update (``gr.skip()``, ``gr.Image(...)``) gives the browser session
its own copy of the widget, whose cached files ``delete_cache`` does not see: image outputs get
values, never updates.

Gradio also keeps each browser session's page state (a copy of every widget's config: about
600 KB per session in this app, ``bench/long_run.py``) until ``state_session_capacity`` sessions
are held, 10,000 by default: gigabytes. ``STATE_SESSIONS`` bounds it (``--state-sessions``); the
oldest sessions' state is dropped (such a visitor's page keeps working; values held only in its
page state, e.g. which models made a generated Judge pair, are forgotten).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

#: Browser sessions whose page state is kept in memory.
STATE_SESSIONS = 200
#: Default age (seconds) after which temporary files are deleted.
TEMP_MAX_AGE_S = 3600
#: The folder that holds our scratch folders.
SCRATCH_ROOT = Path(tempfile.gettempdir()) / "rationalrewards-scratch"
#: Age (seconds) after which a scratch folder goes: Gradio copies a returned file into its cache
#: within the request, so the original is not read again.
SCRATCH_MAX_AGE_S = 600


def delete_cache(max_age_s: int) -> tuple[int, int]:
    """Gradio's ``delete_cache`` setting (sweep interval, age) for files older than ``max_age_s``:
    swept every ``max_age_s`` seconds, at most every 10 minutes."""
    age = max(1, int(max_age_s))
    return min(age, 600), age


def scratch_folder(prefix: str) -> Path:
    """A new empty folder for files the app writes for Gradio to serve; scratch folders older than
    ``SCRATCH_MAX_AGE_S`` (Gradio has long copied their files into its own cache) are removed first."""
    root = SCRATCH_ROOT
    root.mkdir(exist_ok=True)
    cutoff = time.time() - SCRATCH_MAX_AGE_S
    for old in root.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        except FileNotFoundError:  # another request removed it first
            continue
        except OSError as e:
            logger.warning("could not remove the old scratch folder %s: %s", old.name, e)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))
