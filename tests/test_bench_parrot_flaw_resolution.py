"""bench.parrot_flaw_resolution: one row per patch size, the probe before and after, the answers over time."""

from __future__ import annotations

import json

from bench import parrot_flaw_resolution


def rows(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_each_patch_size_is_probed_trained_on_the_flaw_and_timed(capsys):
    assert parrot_flaw_resolution.main(["--patch-sizes", "4", "--steps", "2", "--close-up-steps", "1",
                                        "--eval-every", "1", "--eval-images", "6", "--probe-renders", "12",
                                        "--batch-size", "2"]) == 0
    printed = rows(capsys)
    assert printed[0]["model"] == "reference analyzer"
    row = next(r for r in printed if "visual_tokens" in r)
    assert (row["patch_size"], row["visual_tokens"]) == (4, 64)
    assert [t["step"] for t in row["timeline"]] == [1, 2]
    assert all(set(t["flaw_answer_probs"]) <= {"none", "blur", "noise", "colour_bleed", "broken", "merged", "smudge"}
               for t in row["timeline"])
    assert {"probe_before", "probe_after"} <= set(row) and row["seconds_per_step"] > 0
    summary = printed[-1]["summary"]["patch_4"]
    assert summary["answers"] == row["timeline"][-1]["flaw"]


def test_without_steps_only_the_untrained_tower_is_probed(capsys):
    assert parrot_flaw_resolution.main(["--patch-sizes", "8", "--steps", "0", "--eval-images", "6",
                                        "--probe-renders", "12"]) == 0
    printed = rows(capsys)
    row = next(r for r in printed if "visual_tokens" in r)
    assert row["visual_tokens"] == 16 and "probe_after" not in row and "timeline" not in row
    assert set(printed[-1]["summary"]["patch_8"]) == {"probe_before"}
