"""Suite-wide settings: no model hub, quiet and bounded thread use on the 2-core test machines."""

from __future__ import annotations

import os

# Set before any test module imports transformers/diffusers/huggingface_hub: nothing may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
