"""PARROT (Preference-Anchored Rationalization): turn preference labels into critic training data.

Three stages, each a job kind (a typed config dataclass, ``run(config, ctx)``, ``main(argv)``)
and a ``python -m studio parrot ...`` command:

1. ``generate``: a teacher critic writes, for each labelled pair, critiques of both images that
   explain the label (``studio.parrot.generate``; the anchoring is in ``studio.parrot.anchoring``).
2. ``filter``: keep only rationales whose own scores re-predict the label without seeing it
   (``studio.parrot.filter``).
3. ``export`` and ``distill``: kept rationales become student examples in the studio's exact
   critic protocol, written as LLaMA-Factory sharegpt data (``studio.parrot.export``) and trained
   into a ``save_pretrained`` critic folder (``studio.parrot.distill``).

Nothing here imports the UI. See ``docs/parrot.md`` for the design and the measurements.
"""
