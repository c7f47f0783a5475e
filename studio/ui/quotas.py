"""The numbers a shared deployment is limited by (see ``studio.ui.limits`` for how they are
enforced). Free of Gradio, so that ``app.py --help`` can quote the defaults without loading it."""

from __future__ import annotations

from dataclasses import dataclass

from models.errors import InvalidInputError

#: Requests that may wait in the queue before new ones are turned away.
QUEUE_SIZE = 32
#: Public-mode defaults (0 in a setting: no limit).
PUBLIC_SESSION_IMAGES = 12
PUBLIC_VISITOR_REQUESTS = 2


@dataclass(frozen=True)
class Limits:
    """Per-request and per-visitor limits (``None``: none) and the queue size."""

    session_images: int | None = None
    visitor_requests: int | None = None
    queue_size: int = QUEUE_SIZE

    @classmethod
    def for_mode(cls, public: bool, *, session_images: int | None = None, visitor_requests: int | None = None,
                 queue_size: int | None = None) -> "Limits":
        """The limits of a deployment: a setting given wins (0: no limit), else the public-mode
        default in public mode and no limit locally."""
        def pick(given: int | None, default: int, what: str) -> int | None:
            if given is not None and given < 0:
                raise InvalidInputError(f"{what} must be 0 (no limit) or more, got {given}.")
            value = given if given is not None else (default if public else 0)
            return value or None

        size = QUEUE_SIZE if queue_size is None else queue_size
        if size < 1:
            raise InvalidInputError(f"--queue-size must be 1 or more, got {size}.")
        return cls(pick(session_images, PUBLIC_SESSION_IMAGES, "--max-session-images"),
                   pick(visitor_requests, PUBLIC_VISITOR_REQUESTS, "--max-visitor-requests"), size)

    def check_session(self, rounds: float, candidates: float) -> None:
        """Raise ``InvalidInputError`` when ``rounds`` × ``candidates`` passes the images limit."""
        if self.session_images is None:
            return
        try:
            rounds, candidates = int(rounds), int(candidates)
        except (TypeError, ValueError, OverflowError):
            return  # not numbers: the handler refuses them with its own message
        asked = rounds * candidates
        if asked > self.session_images:
            raise InvalidInputError(
                f"This shared studio makes at most {self.session_images} images per session (rounds × images per "
                f"round); you asked for {rounds} × {candidates} = {asked}. Lower Max rounds or Images per "
                "round (operator setting: --max-session-images, STUDIO_MAX_SESSION_IMAGES).")
