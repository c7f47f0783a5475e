"""Diffusion RL with the critic as reward (DiffusionNFT), as a job kind: ``studio.rl.train``.

Modules: ``config`` (settings), ``data`` (prompts), ``flow`` (pipelines as velocity fields),
``weights`` (LoRA / full, old, EMA, base), ``nft`` (the loss), ``advantages`` (groups and
weights), ``reward`` (critic calls overlapped with sampling), ``trainer`` (one step),
``evaluate`` (held-out eval, reward-hacking monitor, grids), ``checkpoint``, ``train`` (the job).
"""
