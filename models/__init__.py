"""Model backends behind small interfaces: critics, generators and rewriters.

Nothing in this package imports ``studio`` or ``gradio``; heavy libraries (transformers,
diffusers, httpx) are imported inside the backend modules that need them.
"""
