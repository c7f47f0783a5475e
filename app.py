"""RationalRewards Studio: the Gradio app.

Run ``python app.py`` for the shapes world on CPU, or choose backends with flags (``--help``).
Host and port also come from Gradio's ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``, every
other flag from its ``STUDIO_*`` variable.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys

from models.errors import ConfigError, InvalidInputError, StudioError
from studio.options import add_backend_options, config_from_args, configure_logging, env, env_flag
from studio.ui.quotas import PUBLIC_SESSION_IMAGES, PUBLIC_VISITOR_REQUESTS, QUEUE_SIZE, Limits
from studio.ui.scratch import STATE_SESSIONS, TEMP_MAX_AGE_S

logger = logging.getLogger("app")

#: Upload limit in public mode when --max-upload-mb is not given.
PUBLIC_UPLOAD_MB = 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the app's flags; defaults come from the environment."""
    parser = argparse.ArgumentParser(description="RationalRewards Studio (Gradio app).")
    add_backend_options(parser)
    server = parser.add_argument_group("server")
    server.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on [GRADIO_SERVER_NAME, default 127.0.0.1]")
    server.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860") or 7860),
                        help="port to listen on [GRADIO_SERVER_PORT, default 7860]")
    server.add_argument("--public", action="store_true", default=env_flag("STUDIO_PUBLIC"),
                        help="shared-deployment mode: hide endpoint and file-system settings, limit uploads "
                             "[STUDIO_PUBLIC]")
    server.add_argument("--max-upload-mb", type=float, default=_env_float("STUDIO_MAX_UPLOAD_MB"),
                        help=f"largest accepted upload in MB [STUDIO_MAX_UPLOAD_MB; default: no limit, "
                             f"{PUBLIC_UPLOAD_MB} with --public]")
    server.add_argument("--temp-max-minutes", type=float, default=_env_float("STUDIO_TEMP_MAX_MINUTES"),
                        help="delete temporary copies of uploads and outputs older than this [STUDIO_TEMP_MAX_MINUTES, "
                             f"default {TEMP_MAX_AGE_S // 60}]")
    server.add_argument("--state-sessions", type=int, default=int(env("STUDIO_STATE_SESSIONS", str(STATE_SESSIONS)) or 0),
                        help="browser sessions whose page state Gradio keeps in memory, about 600 KB each; the "
                             f"oldest are dropped beyond it [STUDIO_STATE_SESSIONS, default {STATE_SESSIONS}]")
    server.add_argument("--shared-gallery", action="store_true", default=env_flag("STUDIO_SHARED_GALLERY"),
                        help="with --public: every visitor sees everyone's sessions and votes (read-only: only "
                             "its own visitor continues a session); default: each visitor sees their own "
                             "[STUDIO_SHARED_GALLERY]")
    server.add_argument("--max-session-images", type=int, default=_env_int("STUDIO_MAX_SESSION_IMAGES"),
                        metavar="N", help=f"most images one session may ask for (rounds x images per round), 0: no "
                                          f"limit [STUDIO_MAX_SESSION_IMAGES; default: no limit, "
                                          f"{PUBLIC_SESSION_IMAGES} with --public]")
    server.add_argument("--max-visitor-requests", type=int, default=_env_int("STUDIO_MAX_VISITOR_REQUESTS"),
                        metavar="N", help=f"model requests one visitor may have waiting or running at once, 0: no "
                                          f"limit [STUDIO_MAX_VISITOR_REQUESTS; default: no limit, "
                                          f"{PUBLIC_VISITOR_REQUESTS} with --public]")
    server.add_argument("--queue-size", type=int, default=_env_int("STUDIO_QUEUE_SIZE"), metavar="N",
                        help=f"model requests that may wait before new ones are refused (store-only actions "
                             f"never wait behind them) [STUDIO_QUEUE_SIZE, default {QUEUE_SIZE}]")
    server.add_argument("--mcp", action="store_true", default=env_flag("STUDIO_MCP"),
                        help="also serve the API as MCP tools (needs gradio[mcp]) [STUDIO_MCP]")
    server.add_argument("--share", action="store_true", default=env_flag("STUDIO_SHARE"),
                        help="ask Gradio for a temporary public share link [STUDIO_SHARE]")
    server.add_argument("--lazy", action="store_true", default=env_flag("STUDIO_LAZY"),
                        help="load each model on its first use instead of in the background while the page "
                             "starts serving [STUDIO_LAZY]")
    return parser.parse_args(argv)


def _env_number(name: str, kind: type[float] | type[int]) -> float | int | None:
    """The environment variable ``name`` as a ``kind`` (``None`` when unset); a ``ConfigError``
    naming it when it is not one."""
    value = env(name)
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError as e:
        raise ConfigError(f"{name} must be {'a whole number' if kind is int else 'a number'}, got {value!r}.") from e


def _env_float(name: str) -> float | None:
    return _env_number(name, float)


def _env_int(name: str) -> int | None:
    return _env_number(name, int)  # type: ignore[return-value]


def limits(args: argparse.Namespace) -> Limits:
    """The request limits and queue size these flags ask for. Raises ``ConfigError`` for a bad value."""
    if args.shared_gallery and not args.public:
        raise ConfigError("--shared-gallery applies to --public (a local studio shows every session anyway); "
                          "add --public or drop it.")
    try:
        return Limits.for_mode(args.public, session_images=args.max_session_images,
                               visitor_requests=args.max_visitor_requests, queue_size=args.queue_size)
    except InvalidInputError as e:
        raise ConfigError(str(e)) from e


def upload_limit(args: argparse.Namespace) -> str | None:
    """Gradio's ``max_file_size`` for these flags (``None``: no limit)."""
    mb = args.max_upload_mb if args.max_upload_mb is not None else (PUBLIC_UPLOAD_MB if args.public else None)
    if mb is None:
        return None
    if mb <= 0:
        raise ConfigError(f"--max-upload-mb must be above 0, got {mb}.")
    return f"{mb:g}mb"


def temp_max_age(args: argparse.Namespace) -> int:
    """Seconds after which Gradio deletes its temporary files, from ``--temp-max-minutes``."""
    minutes = args.temp_max_minutes if args.temp_max_minutes is not None else TEMP_MAX_AGE_S / 60
    if minutes <= 0:
        raise ConfigError(f"--temp-max-minutes must be above 0, got {minutes:g}.")
    return max(1, round(minutes * 60))


def main(argv: list[str] | None = None) -> int:
    """Build the services and serve the app until interrupted. Returns the exit status."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        args = parse_args(argv)
        configure_logging(args.verbose, args.quiet)
        if args.mcp and importlib.util.find_spec("mcp") is None:
            raise ConfigError("--mcp needs the MCP extra of Gradio: pip install 'gradio[mcp]'.")
        config = config_from_args(args)
        max_file_size = upload_limit(args)
        max_age_s = temp_max_age(args)
        if args.state_sessions < 1:
            raise ConfigError(f"--state-sessions must be at least 1, got {args.state_sessions}.")
        request_limits = limits(args)
        from studio.services import Services  # heavy imports only once the flags are known to be good
        from studio.ui.app import LAUNCH_OPTIONS, build_app
        from studio.ui.preload import preload

        services = Services.from_config(config)
        demo = build_app(services, public=args.public, shared_gallery=args.shared_gallery, limits=request_limits,
                         temp_max_age_s=max_age_s)
    except StudioError as e:
        print(f"app.py: {e}", file=sys.stderr)
        return 2
    if not args.lazy:
        preload(services)
    logger.info("serving on http://%s:%d (public mode: %s%s; %s)", args.host, args.port, args.public,
                ", shared gallery" if args.shared_gallery else "", request_limits)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        mcp_server=args.mcp,
        max_file_size=max_file_size,
        **{**LAUNCH_OPTIONS, "state_session_capacity": args.state_sessions},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
