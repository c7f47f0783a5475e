"""The preference benchmark runner: benchmark layouts, judging modes and accuracy summaries."""
