"""The Gradio app: five tabs over the engine, one queue, stable ``api_name``s.

Every listener that runs a model shares ``concurrency_id="gpu"`` with a limit of 1, so one GPU
is never asked for two things at once, and a queue of at most ``--queue-size`` waiting requests;
store-only listeners (history, votes, exports) skip the queue in the page and have a concurrency
of their own (``limits.STORE_ONLY``) for API clients, so requests waiting for the model neither hold
them up nor fill the queue against them.
In public mode each visitor sees only their own sessions and votes (``studio.ui.visitors``) and
model requests are limited per request and per visitor (``studio.ui.limits``).
Each public endpoint is named after the engine function it calls: ``refine``, ``resume``,
``judge``, ``vote``, ``generate_pair``, ``diagnose``, ``diagnose_batch``, ``history_search``,
``history_open``, ``session_json``, ``export_session`` and ``export_votes``; the Training tab
(not in public mode) adds ``start_job``, ``list_jobs``, ``job_view``, ``job_rationales``, ``cancel_job``, ``resume_job``,
``delete_job`` and ``leaderboard``, which only touch job records (jobs are processes of their own),
``release_models``, which frees the app's models for a GPU job, and ``use_critic`` / ``load_lora``, which
swap in a job's distilled critic or LoRA (these three on the shared GPU slot), and ``open_in_leaderboard``.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from studio.services import Services
from studio.ui import style
from studio.ui.adapt import CSS
from studio.ui.agents import add_agent_tools, hide_ui_endpoints_from_mcp
from studio.ui.errors import hide_server_paths
from studio.ui.limits import Admission
from studio.ui.quotas import Limits
from studio.ui.scratch import STATE_SESSIONS, TEMP_MAX_AGE_S, delete_cache
from studio.ui.tabs.diagnose import create_diagnose_tab
from studio.ui.tabs.history import create_history_tab
from studio.ui.tabs.judge import create_judge_tab
from studio.ui.tabs.studio import create_studio_tab, models_markdown
from studio.ui.tabs.training import create_training_tab
from studio.ui.visitors import Visitors

logger = logging.getLogger(__name__)

API_NAMES = ("refine", "resume", "judge", "vote", "generate_pair", "diagnose", "diagnose_batch", "history_search",
             "history_open", "session_json", "export_session", "export_votes")
#: The Training tab's endpoints (absent in public mode).
TRAINING_API_NAMES = ("start_job", "list_jobs", "job_view", "job_rationales", "cancel_job", "resume_job", "delete_job",
                      "leaderboard", "release_models", "use_critic", "load_lora", "open_in_leaderboard")


def build_app(services: Services, *, public: bool = False, shared_gallery: bool = False,
              limits: Limits | None = None, temp_max_age_s: int = TEMP_MAX_AGE_S) -> gr.Blocks:
    """The studio's ``gr.Blocks`` over ``services``.

    :param public: shared-deployment mode: no endpoint or model-folder settings, no server
        folders or paths (in errors and exports too) and no Training tab in the UI; each visitor
        sees only their own sessions, judgements and votes (the upload size limit is set at
        ``launch``, see ``app.py``). The agent tools (``studio.ui.agents``) are left out: MCP calls
        carry no visitor identity, so they could not be scoped.
    :param shared_gallery: in public mode, everyone sees everyone's sessions and votes (only
        their own visitor continues a session).
    :param limits: images per session, model requests per visitor and queue size (default: the
        public-mode limits in public mode, none locally, a queue of ``quotas.QUEUE_SIZE``).
    :param temp_max_age_s: Gradio deletes its cached copies of uploads and outputs older than this.
    """
    limits = limits or Limits.for_mode(public)
    visitors = Visitors(public=public, shared=shared_gallery, key_file=services.store.path.parent / "visitor-key")
    admission = Admission(limits, visitors)
    if public:
        hide_server_paths()
    with gr.Blocks(title="RationalRewards Studio", delete_cache=delete_cache(temp_max_age_s)) as demo:
        gr.Markdown("# RationalRewards Studio\nGenerate, critique, refine — with a reward model that explains itself.")
        if not public:
            add_agent_tools(services)  # first: their MCP tool names are the plain action names
        with gr.Tabs() as tabs:
            with gr.Tab("Studio", id="studio"):
                studio = create_studio_tab(services, public=public, admission=admission)
            with gr.Tab("Judge", id="judge"):
                create_judge_tab(services, public=public, admission=admission)
            with gr.Tab("Diagnose", id="diagnose"):
                create_diagnose_tab(services, public=public, admission=admission)
            with gr.Tab("History", id="history") as history:
                create_history_tab(services, public=public, tab=history, tabs=tabs, studio=studio, visitors=visitors)
            if not public:  # background jobs run code and read folders on the server
                with gr.Tab("Training", id="training"):
                    create_training_tab(services, models_view=studio["models"])
        # read again on each page load: the Training tab may have swapped the critic or a generator
        demo.load(lambda: models_markdown(services.names()), None, studio["models"], api_visibility="private",
                  queue=False)
        visitors.attach(demo)
    if not public:
        hide_ui_endpoints_from_mcp(demo)
    demo.queue(max_size=None, default_concurrency_limit=4)  # the model queue's size: see studio.ui.limits
    admission.bind(demo)
    return demo


#: Keyword arguments for ``demo.launch`` shared by every way of serving the app.
LAUNCH_OPTIONS: dict[str, Any] = {"css": CSS + style.CSS, "js": style.JS, "show_error": False, "footer_links": ["api"],
                                  "state_session_capacity": STATE_SESSIONS}
