"""The Gradio app over the studio engine: ``build_app(services)`` in ``studio.ui.app``."""
