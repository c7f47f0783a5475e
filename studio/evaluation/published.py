"""Published pairwise accuracies (percent) from the RationalRewards paper, Table 1, shown beside
our own figures in the Leaderboard and always labelled as published.

Keys are benchmark names as the runner reports them (``EvalConfig.layout`` after auto-detection).
"""

from __future__ import annotations

#: benchmark -> judge -> accuracy in percent, as reported (not measured here).
PUBLISHED_ACCURACY: dict[str, dict[str, float]] = {
    "mmrb2-t2i": {"RationalRewards-8B": 64.2, "Qwen3-VL-8B": 59.4, "Qwen3-VL-32B": 64.1, "Gemini 2.5 Pro": 70.5},
    "mmrb2-edit": {"RationalRewards-8B": 70.3, "Qwen3-VL-8B": 61.7, "Qwen3-VL-32B": 67.3, "Gemini 2.5 Pro": 71.3},
    "editreward-bench": {"RationalRewards-8B": 66.2, "Qwen3-VL-8B": 51.9, "Qwen3-VL-32B": 64.2, "Gemini 2.5 Pro": 71.3},
    "genai-bench-t2i": {"RationalRewards-8B": 69.8, "Qwen3-VL-8B": 55.1, "Qwen3-VL-32B": 66.9, "Gemini 2.5 Pro": 66.2},
    "genai-bench-edit": {"RationalRewards-8B": 80.1, "Qwen3-VL-8B": 50.1, "Qwen3-VL-32B": 76.3, "Gemini 2.5 Pro": 78.9},
}
