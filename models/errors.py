"""The one exception hierarchy of the project. Messages are plain language for users:
what was wrong, what was received, what to do."""

from __future__ import annotations


class StudioError(Exception):
    """Base class of every error the studio shows to a user."""


class InvalidInputError(StudioError):
    """A user input is unusable: empty prompt, unreadable image, size out of range."""


class BackendUnavailableError(StudioError):
    """A model backend cannot be reached or loaded: endpoint down, weights missing."""


class NotFoundError(StudioError):
    """A session, image, or job id that does not exist."""


class JobError(StudioError):
    """A background job failed to start, crashed, or was cancelled."""


class ConfigError(StudioError):
    """A setting has an unknown key, a wrong type, or a value out of range."""


class CritiqueParseError(StudioError):
    """Critic output in which no dimension could be parsed. ``raw`` keeps the text."""

    def __init__(self, message: str, raw: str) -> None:
        super().__init__(message)
        self.raw = raw


class CancellationError(StudioError):
    """The user stopped a running operation (a generation) before it finished; nothing was kept."""


class RewriteError(StudioError):
    """A prompt rewriter produced no usable prompt (empty, or over the generator's length limit)."""
