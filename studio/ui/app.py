"""The Gradio app: five tabs over the engine, one queue, stable ``api_name``s.

Every listener that runs a model shares ``concurrency_id="gpu"`` with a limit of 1, so one GPU
is never asked for two things at once; store-only listeners (history, votes, exports) skip the
queue, so requests waiting for the model neither hold them up nor fill the queue against them.
Each public endpoint is named after the engine function it calls: ``refine``, ``resume``,
``judge``, ``vote``, ``generate_pair``, ``diagnose``, ``diagnose_batch``, ``history_search``,
``history_open``, ``session_json``, ``export_session`` and ``export_votes``; the Training tab
(not in public mode) adds ``start_job``, ``list_jobs``, ``job_view``, ``cancel_job``, ``resume_job``,
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
from studio.ui.scratch import STATE_SESSIONS, TEMP_MAX_AGE_S, delete_cache
from studio.ui.tabs.diagnose import create_diagnose_tab
from studio.ui.tabs.history import create_history_tab
from studio.ui.tabs.judge import create_judge_tab
from studio.ui.tabs.studio import create_studio_tab, models_markdown
from studio.ui.tabs.training import create_training_tab

logger = logging.getLogger(__name__)

#: Requests that may wait in the queue before new ones are turned away.
QUEUE_SIZE = 32

API_NAMES = ("refine", "resume", "judge", "vote", "generate_pair", "diagnose", "diagnose_batch", "history_search",
             "history_open", "session_json", "export_session", "export_votes")
#: The Training tab's endpoints (absent in public mode).
TRAINING_API_NAMES = ("start_job", "list_jobs", "job_view", "cancel_job", "resume_job", "delete_job", "leaderboard",
                      "release_models", "use_critic", "load_lora", "open_in_leaderboard")


def build_app(services: Services, *, public: bool = False, temp_max_age_s: int = TEMP_MAX_AGE_S) -> gr.Blocks:
    """The studio's ``gr.Blocks`` over ``services``.

    :param public: shared-deployment mode: no endpoint or model-folder settings, no server
        folders and no Training tab in the UI (the upload size limit is set at ``launch``, see
        ``app.py``).
    :param temp_max_age_s: Gradio deletes its cached copies of uploads and outputs older than this.
    """
    with gr.Blocks(title="RationalRewards Studio", delete_cache=delete_cache(temp_max_age_s)) as demo:
        gr.Markdown("# RationalRewards Studio\nGenerate, critique, refine — with a reward model that explains itself.")
        add_agent_tools(services, public=public)  # first: their MCP tool names are the plain action names
        with gr.Tabs() as tabs:
            with gr.Tab("Studio", id="studio"):
                studio = create_studio_tab(services, public=public)
            with gr.Tab("Judge", id="judge"):
                create_judge_tab(services, public=public)
            with gr.Tab("Diagnose", id="diagnose"):
                create_diagnose_tab(services, public=public)
            with gr.Tab("History", id="history") as history:
                create_history_tab(services, public=public, tab=history, tabs=tabs, studio=studio)
            if not public:  # background jobs run code and read folders on the server
                with gr.Tab("Training", id="training"):
                    create_training_tab(services, models_view=studio["models"])
        # read again on each page load: the Training tab may have swapped the critic or a generator
        demo.load(lambda: models_markdown(services.names()), None, studio["models"], api_visibility="private",
                  queue=False)
    hide_ui_endpoints_from_mcp(demo)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=4)
    return demo


#: Keyword arguments for ``demo.launch`` shared by every way of serving the app.
LAUNCH_OPTIONS: dict[str, Any] = {"css": CSS + style.CSS, "js": style.JS, "show_error": False, "footer_links": ["api"],
                                  "state_session_capacity": STATE_SESSIONS}
