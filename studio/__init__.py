"""The studio engine: Generate-Critique-Refine sessions, judging, diagnosis and the session store.

UI-free: the Gradio app and the CLI are thin layers over these modules. The error classes of
``models.errors`` are re-exported here.
"""

from models.errors import (
    BackendUnavailableError,
    ConfigError,
    CritiqueParseError,
    InvalidInputError,
    JobError,
    NotFoundError,
    StudioError,
)

__all__ = [
    "BackendUnavailableError",
    "ConfigError",
    "CritiqueParseError",
    "InvalidInputError",
    "JobError",
    "NotFoundError",
    "StudioError",
]
