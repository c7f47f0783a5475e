"""``python -m studio``: each command in-process over fake backends, checking the JSON lines, the
exit status, the files written and what the store holds."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from studio.cli import COMMANDS, build_parser, main
from studio.services import Services
from tests.studio_fakes import ScriptedCritic, good, make_services, poor

ROOT = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], services: Services, *argv: str) -> tuple[int, list[dict], str]:
    """Run the CLI; return (exit status, parsed JSON lines, stderr)."""
    status = main([*argv, "--no-progress"], services=services)
    captured = capsys.readouterr()
    return status, [json.loads(line) for line in captured.out.splitlines()], captured.err


def images(folder: Path, *colours: tuple[int, int, int]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, colour in enumerate(colours):
        Image.new("RGB", (32, 32), colour).save(folder / f"img{i}.png")
    return folder


def test_refine_prints_one_line_per_event_until_stopped(tmp_path, capsys):
    services = make_services(tmp_path, ScriptedCritic([poor(2.0), good(3.8)]))
    status, lines, _ = run(capsys, services, "refine", "a red square", "--rounds", "3")
    assert status == 0
    kinds = [line["event"] for line in lines]
    assert kinds[0] == "SessionStarted" and kinds[-1] == "Stopped"
    assert kinds.count("RoundFinished") == 2
    stopped = lines[-1]
    assert stopped["reason"] == "thresholds_met" and stopped["best"]["round"] == 2
    assert Path(stopped["best"]["image"]).is_file()
    ready = [line for line in lines if line["event"] == "ImageReady"]
    assert all(Path(line["image"]).is_file() for line in ready)
    assert services.store.get_session(stopped["session_id"])["status"] == "finished"


def test_refine_empty_prompt_exits_2_with_message_and_stores_nothing(tmp_path, capsys):
    services = make_services(tmp_path, ScriptedCritic([good()]))
    status, lines, err = run(capsys, services, "refine", "   ")
    assert status == 2 and lines == []
    assert "prompt is empty" in err and "Traceback" not in err
    assert services.store.search_sessions() == []


def test_refine_pause_then_resume_with_an_edited_prompt(tmp_path, capsys):
    critic = ScriptedCritic([poor(2.0), good(3.9)])
    services = make_services(tmp_path, critic)
    status, lines, _ = run(capsys, services, "refine", "a blue square", "--pause")
    assert status == 0 and lines[-1]["reason"] == "awaiting_prompt"
    session_id = lines[-1]["session_id"]
    status, lines, _ = run(capsys, services, "refine", "--resume", session_id, "a bigger blue square")
    assert status == 0 and lines[-1]["reason"] == "thresholds_met"
    started = [line for line in lines if line["event"] == "RoundStarted"]
    assert started[0]["prompt"] == "a bigger blue square"


def test_refine_critic_failure_exits_1_and_marks_the_session_failed(tmp_path, capsys):
    services = make_services(tmp_path, ScriptedCritic(["the critic wrote nonsense"]))
    status, lines, _ = run(capsys, services, "refine", "a red square")
    assert status == 1
    failed = [line for line in lines if line["event"] == "CritiqueReady"][0]["critique"]
    assert failed["ok"] is False and failed["reason"] == "the critic wrote nonsense"
    assert lines[-1]["reason"] == "critic_failed"
    assert services.store.get_session(lines[-1]["session_id"])["status"] == "failed"


def test_refine_bad_threshold_is_a_clean_error(tmp_path, capsys):
    services = make_services(tmp_path, ScriptedCritic([good()]))
    status, _, err = run(capsys, services, "refine", "a red square", "--threshold", "sharpness=3")
    assert status == 2 and "DIMENSION=SCORE" in err


def test_judge_prints_the_verdict_and_stores_the_judgement(tmp_path, capsys):
    a_wins = ({"text_faithfulness": 3.5, "physical_quality": 3.0}, {"text_faithfulness": 2.0, "physical_quality": 2.0})
    b_first = (a_wins[1], a_wins[0])  # the B/A call sees B in first place
    services = make_services(tmp_path, ScriptedCritic([good()], pair_script=[a_wins, b_first]))
    folder = images(tmp_path / "pair", (200, 0, 0), (0, 0, 200))
    status, lines, _ = run(capsys, services, "judge", "--prompt", "a red square",
                           str(folder / "img0.png"), str(folder / "img1.png"))
    assert status == 0
    verdict = lines[0]
    assert verdict["event"] == "PairVerdict" and verdict["winner"] == "A" and verdict["consistent"] is True
    assert services.store.get_judgement(verdict["judgement_id"])["winner"] == "A"


def test_judge_missing_image_is_a_clean_error(tmp_path, capsys):
    services = make_services(tmp_path, ScriptedCritic([good()]))
    missing = [str(tmp_path / "nope.png"), str(tmp_path / "x.png")]
    status, _, err = run(capsys, services, "judge", "--prompt", "p", *missing)
    assert status == 2 and "no file at" in err


def test_diagnose_folder_prints_a_row_per_image_and_writes_csv(tmp_path, capsys):
    services = make_services(tmp_path, ScriptedCritic([good(3.0), "unparseable"]))
    folder = images(tmp_path / "imgs", (200, 0, 0), (0, 200, 0))
    table = tmp_path / "out.csv"
    status, lines, _ = run(capsys, services, "diagnose", str(folder), "--prompt", "a square", "--csv", str(table))
    assert status == 1  # one image could not be scored
    assert [line["name"] for line in lines] == ["img0.png", "img1.png"]
    assert lines[0]["ok"] is True and lines[0]["text_faithfulness"] == 3.0
    assert lines[1]["ok"] is False and lines[1]["failure"] == "unparseable" and lines[1]["score"] is None
    rows = list(csv.DictReader(table.open()))
    assert [r["name"] for r in rows] == ["img0.png", "img1.png"]


def test_curate_keeps_and_copies_only_images_above_the_threshold(tmp_path, capsys):
    services = make_services(tmp_path, ScriptedCritic([good(3.8), poor(1.5), good(3.6)]))
    folder = images(tmp_path / "imgs", (200, 0, 0), (0, 200, 0), (0, 0, 200))
    kept_dir = tmp_path / "kept"
    status, lines, _ = run(capsys, services, "curate", str(folder), "--prompt", "a square", "--min-score", "0.8",
                           "--copy-to", str(kept_dir))
    assert status == 0
    assert [line["kept"] for line in lines] == [True, False, True]
    assert sorted(p.name for p in kept_dir.iterdir()) == ["img0.png", "img2.png"]


def test_curate_does_not_keep_an_unscored_image_and_says_so(tmp_path, capsys):
    services = make_services(tmp_path, ScriptedCritic([good(3.8), "the critic wrote nonsense"]))
    folder = images(tmp_path / "imgs", (200, 0, 0), (0, 200, 0))
    status, lines, _ = run(capsys, services, "curate", str(folder), "--prompt", "p", "--min-score", "0.1")
    assert status == 1
    assert [(line["kept"], line["failure"]) for line in lines] == [(True, None), (False, "the critic wrote nonsense")]


def test_curate_dimension_minimum_rejects_an_image(tmp_path, capsys):
    services = make_services(tmp_path, ScriptedCritic([{"text_faithfulness": 4.0, "physical_quality": 2.5,
                                                        "text_rendering": None}]))
    folder = images(tmp_path / "imgs", (200, 0, 0))
    status, lines, _ = run(capsys, services, "curate", str(folder), "--prompt", "p", "--min-score", "0.1",
                           "--min", "physical_quality=3")
    assert status == 0 and lines[0]["kept"] is False


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help_text(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert "--store" in capsys.readouterr().out


def test_module_entry_point_reports_bad_flags_without_traceback(tmp_path):
    """``python -m studio`` itself: a flag combination that cannot work exits 2 with a sentence."""
    result = subprocess.run(
        [sys.executable, "-m", "studio", "diagnose", str(tmp_path), "--prompt", "p", "--store", str(tmp_path / "s"),
         "--critic-model", "x"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "--critic-url" in result.stderr and "Traceback" not in result.stderr


def test_curate_never_keeps_a_critique_missing_a_dimension():
    from studio.cli import passes
    from studio.diagnose import DiagnosisRow

    scores = {"text_faithfulness": 3.75, "physical_quality": None, "text_rendering": None}
    cut_off = DiagnosisRow("a.png", "t2i", "a red cube", ok=True, score=0.917, scores=scores,
                           missing=["physical_quality", "text_rendering"])
    assert not passes(cut_off, 0.5, {"text_faithfulness": 3.0})
    na_text = DiagnosisRow("b.png", "t2i", "a red cube", ok=True, score=0.917,
                           scores={**scores, "physical_quality": 3.75})
    assert passes(na_text, 0.5, {"text_rendering": 3.5})


def test_diagnose_accepts_single_image_files_and_folders_together(tmp_path, capsys):
    services = make_services(tmp_path, ScriptedCritic([good(3.0)]))
    folder = images(tmp_path / "imgs", (200, 0, 0), (0, 200, 0))
    single = images(tmp_path / "one", (0, 0, 200)) / "img0.png"
    status, lines, _ = run(capsys, services, "diagnose", str(single), "--prompt", "a square")
    assert status == 0 and [line["image"] for line in lines] == [str(single)]
    status, lines, _ = run(capsys, services, "diagnose", str(single), str(folder), "--prompt", "a square")
    assert status == 0 and [line["name"] for line in lines] == ["img0.png", "img0.png", "img1.png"]
    status, _, err = run(capsys, services, "diagnose", str(tmp_path / "missing.png"), "--prompt", "a square")
    assert status == 2 and "no such image file or folder" in err


@pytest.mark.parametrize("flags, message", [
    (["--min-score", "5"], "--min-score 5: the score is between 0 and 1"),
    (["--min-score", "0.5", "--min", "physical_quality=7"], "a score from 1 to 4"),
])
def test_curate_refuses_scores_out_of_range(tmp_path, capsys, flags, message):
    services = make_services(tmp_path, ScriptedCritic([good()]))
    folder = images(tmp_path / "imgs", (200, 0, 0))
    status, lines, err = run(capsys, services, "curate", str(folder), "--prompt", "p", *flags)
    assert status == 2 and lines == [] and message in err


@pytest.mark.parametrize("store", ["a-file", "/proc/nope"])
def test_a_store_that_cannot_be_opened_exits_2_with_a_message(tmp_path, capsys, store):
    (tmp_path / "a-file").write_text("not a folder")
    path = tmp_path / store if store == "a-file" else Path(store)
    image = images(tmp_path / "imgs", (200, 0, 0)) / "img0.png"
    status = main(["diagnose", str(image), "--prompt", "p", "--store", str(path), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2 and "Cannot open the store in" in err and "Traceback" not in err


def test_refine_seed_out_of_range_is_a_clean_error(tmp_path, capsys):
    services = make_services(tmp_path, ScriptedCritic([good()]))
    status, _, err = run(capsys, services, "refine", "a red square", "--seed", str(2**70))
    assert status == 2 and "seed must be" in err and "4294967295" in err
