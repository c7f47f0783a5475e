"""The critic I/O benches: photo-like images, a run end to end on tiny sizes, their reports."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from bench import critic_http, critic_local, png_encode


def test_photo_like_images_are_noisy_and_each_request_gets_its_own_object():
    pixels = critic_http.photo_like(128, seed=3)
    assert pixels.shape == (128, 128, 3) and pixels.dtype == np.uint8
    # like a photo: deflate saves little (a drawn render shrinks to a few percent)
    assert len(zlib.compress(pixels.tobytes(), 6)) > 0.6 * pixels.size
    requests = critic_http.make_requests(10, 64, "photo")
    assert len({id(r.image) for r in requests}) == 10
    assert requests[0].image.tobytes() == requests[8].image.tobytes()  # 8 fields, cycled


def test_critic_http_runs_both_compressions_and_reports_each_size(capsys):
    code = critic_http.main(["--sizes", "32,48", "--requests", "8", "--concurrency", "4", "--latency-ms", "20",
                             "--repeats", "2", "--floor", "0", "--compression", "none,fast"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and report["failures"] == 0
    assert [(r["size"], r["compression"]) for r in report["results"]] == [
        (32, "none"), (32, "fast"), (48, "none"), (48, "fast")]
    assert all(r["client_cpu_ms_per_request"] > 0 and r["whole_run_fraction"] > 0 for r in report["results"])
    # 4 slots answering 20 ms after each request: nobody holds more than the ideal 200 requests/s
    assert all(0 < r["held_fraction"] <= 1.05 for r in report["results"])


def test_critic_http_needs_a_second_wave_to_measure_a_held_rate():
    with pytest.raises(SystemExit):
        critic_http.main(["--requests", "40", "--concurrency", "32"])


def test_critic_http_refuses_an_unknown_compression():
    with pytest.raises(SystemExit):
        critic_http.main(["--compression", "zip"])


def test_png_encode_reports_every_method_per_size(capsys):
    assert png_encode.main(["--sizes", "32", "--images", "2"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["method"] for r in report["results"]] == ["pillow_level1", "none", "fast"]
    assert report["results"][0]["ratio_to_pillow"] == 1.0


def test_critic_local_sizes_the_answer_by_the_real_checkpoints_prompt_answer_ratio(capsys):
    code = critic_local.main(["--requests", "2", "--batch-size", "2", "--repeats", "1", "--max-new-tokens", "3",
                              "--floor", "0"])
    out = capsys.readouterr().out.strip().splitlines()
    report = json.loads(out[-1])
    assert code == 0 and report["token_counts_equal"] and report["tokens_per_run"] == 6
    # ~1,080 text tokens (4,300 bytes at 4 per token) + 1,024 image tokens against an ~880-token critique
    assert 2.0 < report["real_ratio"] < 2.8
    assert "1024 image tokens" in out[0]
    default_answer = round(report["prompt_tokens"] / report["real_ratio"])
    assert 1500 < default_answer < 2200  # what a default run generates per critique
