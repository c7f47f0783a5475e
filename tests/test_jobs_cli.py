"""``python -m studio jobs ...`` in-process (the jobs themselves run as real processes), the
diagnose/curate job kinds with the shapes-world critic, the kind registry and backend specs."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from models.errors import ConfigError, InvalidInputError, NotFoundError
from models.shapes import world
from studio.cli import main
from studio.config import StudioConfig
from studio.jobs import registry
from studio.jobs.specs import app_spec, check_spec, critic_folder_spec
from studio.services import Services
from studio.store import SessionStore
from tests.studio_fakes import ScriptedCritic, good, make_services

ROOT = Path(__file__).resolve().parent.parent
KIND = "tests.jobs_counting"


def jobs(capsys: pytest.CaptureFixture[str], store: Path, action: str, *argv: str) -> tuple[int, list[dict], str]:
    """Run ``jobs ACTION --store STORE ARGV``; return (exit status, JSON lines, stderr)."""
    status = main(["jobs", action, "--store", str(store), *argv])
    captured = capsys.readouterr()
    return status, [json.loads(line) for line in captured.out.splitlines()], captured.err


def test_start_wait_list_show_and_logs(tmp_path, capsys):
    status, [started], _ = jobs(capsys, tmp_path, "start", KIND, "--total", "3")
    assert status == 0 and started["kind"] == KIND and started["status"] in ("queued", "running")
    assert started["command"].endswith(f"-m {KIND} --config {started['folder']}/config.json")
    assert json.loads(Path(started["folder"], "config.json").read_text())["total"] == 3

    status, [done], _ = jobs(capsys, tmp_path, "wait", started["id"], "--timeout", "30")
    assert status == 0 and (done["status"], done["step"], done["total"], done["result"]) == ("done", 3, 3, {"counted": 3})

    status, listed, _ = jobs(capsys, tmp_path, "list")
    assert status == 0 and [job["id"] for job in listed] == [started["id"]]

    status, [shown], _ = jobs(capsys, tmp_path, "show", started["id"])
    assert [m["value"] for m in shown["metrics"]] == [1.0, 4.0, 9.0]
    assert [a["name"] for a in shown["artifacts"]] == ["total"]

    assert main(["jobs", "logs", "--store", str(tmp_path), started["id"], "--tail", "1"]) == 0
    assert capsys.readouterr().out == '{"counted": 3}\n'


def test_cancel_and_resume_from_the_command_line(tmp_path, capsys):
    _, [started], _ = jobs(capsys, tmp_path, "start", KIND, "--total", "300", "--delay-s", "0.05")
    status, [cancelled], _ = jobs(capsys, tmp_path, "cancel", started["id"])
    assert status == 0 and "SIGTERM" in cancelled["action"]
    status, [ended], _ = jobs(capsys, tmp_path, "wait", started["id"], "--timeout", "30")
    assert status == 1 and ended["status"] == "cancelled"
    status, [resumed], _ = jobs(capsys, tmp_path, "resume", started["id"])
    assert status == 0 and resumed["action"].endswith("resumes from its last checkpoint.")
    jobs(capsys, tmp_path, "cancel", started["id"])
    jobs(capsys, tmp_path, "wait", started["id"], "--timeout", "30")


@pytest.mark.parametrize(("argv", "message"), [
    (["start", "nope"], "Unknown job kind 'nope'"),
    (["start", "no_such.module_here"], "cannot be imported"),
    (["show", "missing"], "No job with id 'missing'"),
    (["cancel", "missing"], "No job with id 'missing'"),
])
def test_errors_exit_2_with_a_message(tmp_path, capsys, argv, message):
    status, lines, err = jobs(capsys, tmp_path, argv[0], *argv[1:])
    assert status == 2 and lines == [] and message in err and "Traceback" not in err


def test_a_finished_job_cannot_be_cancelled_or_resumed_unless_it_checkpoints(tmp_path, capsys):
    store = SessionStore(tmp_path / "studio.db")
    job_id = store.create_job("diagnose", {}, status="done")
    store.close()
    status, _, err = jobs(capsys, tmp_path, "cancel", job_id)
    assert status == 2 and "has already ended (done)" in err
    status, _, err = jobs(capsys, tmp_path, "resume", job_id)
    assert status == 2 and "diagnose jobs keep no checkpoint" in err


@pytest.fixture
def shapes_batch(tmp_path) -> Path:
    """A .jsonl batch of three rendered scenes; the second is paired with another scene's prompt."""
    rng = random.Random(7)
    scenes = [world.random_scene(rng, word_prob=0) for _ in range(3)]
    for i, scene in enumerate(scenes):
        world.render(scene).save(tmp_path / f"s{i}.png")
    prompts = [world.short_prompt(scenes[0]), world.short_prompt(scenes[0]), world.short_prompt(scenes[2])]
    table = tmp_path / "batch.jsonl"
    table.write_text("".join(json.dumps({"prompt": p, "image": f"s{i}.png"}) + "\n" for i, p in enumerate(prompts)))
    return table


def test_curate_job_keeps_the_images_that_match_their_prompt(tmp_path, capsys, shapes_batch):
    store_dir = tmp_path / "store"
    # the mismatched image has the two red stars but a green circle for the red one and an extra
    # green star: Text Faithfulness 2.9 of 4 under the severity-graded critic, overall 0.82
    _, [started], _ = jobs(capsys, store_dir, "start", "curate", "--inputs", str(shapes_batch), "--min-score", "0.9")
    status, [done], _ = jobs(capsys, store_dir, "wait", started["id"], "--timeout", "120")
    assert status == 0, done["reason"]
    assert {k: done["result"][k] for k in ("critic", "n", "scored", "failed", "kept")} == \
        {"critic": "shapes", "n": 3, "scored": 3, "failed": 0, "kept": 2}
    assert sorted(p.name for p in (Path(done["folder"]) / "kept").iterdir()) == ["s0.png", "s2.png"]
    store = SessionStore(store_dir / "studio.db")
    try:  # the critiques went to the job's own store, like the CLI's
        assert store.db.execute("select count(*) from critiques").fetchone()[0] == 3
    finally:
        store.close()


def test_diagnose_kind_runs_in_the_foreground_with_the_result_as_the_last_line(tmp_path, shapes_batch):
    result = subprocess.run(
        [sys.executable, "-m", "studio.jobs.kinds.diagnose", "--inputs", str(shapes_batch), "--store",
         str(tmp_path / "store"), "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert (summary["n"], summary["scored"]) == (3, 3)
    assert (tmp_path / "run" / "diagnosis.csv").is_file() and "step 3/3" in result.stderr


def test_a_kind_config_error_exits_2_and_names_the_setting(tmp_path, capsys):
    status, _, err = jobs(capsys, tmp_path, "start", "curate", "--inputs", "x")
    assert status == 2 and "min_score is required" in err


def test_registry_shows_a_kind_that_cannot_be_imported_as_unavailable(monkeypatch):
    monkeypatch.setitem(registry.KINDS, "missing", "tests.no_such_kind_module")
    kinds = registry.available_kinds()
    assert isinstance(kinds["missing"], str) and "cannot be imported" in kinds["missing"]
    assert kinds["diagnose"].config_cls.__name__ == "DiagnoseConfig" and not kinds["diagnose"].resumable
    assert registry.load_kind(KIND).resumable


def test_specs_refuse_secrets_and_non_json_settings_and_come_from_the_apps_backends(tmp_path):
    with pytest.raises(ConfigError, match="must not be written into a job's config"):
        check_spec({"backend": "openai", "api_key": "sk-x"})
    with pytest.raises(ConfigError, match="plain JSON"):
        check_spec({"backend": "openai", "timeout_s": object()})
    with pytest.raises(ConfigError, match="'backend' name"):
        check_spec({"base_url": "http://x"})
    spec = {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}
    built = Services.from_config(StudioConfig(store_dir=str(tmp_path / "a"), critic=spec))
    try:
        assert app_spec(built, "critic") == spec and app_spec(built, "t2i_generator") is None
    finally:
        built.close()
    fake = make_services(tmp_path / "b", ScriptedCritic([good()]))
    with pytest.raises(ConfigError, match="given as an object"):
        app_spec(fake, "critic")


def test_a_critic_folder_spec_keeps_the_apps_transformers_settings_and_refuses_a_non_model_folder(tmp_path):
    folder = tmp_path / "critic"
    folder.mkdir()
    current = {"backend": "transformers", "model": "TIGER-Lab/RationalRewards-8B-T2I", "quantization": "4bit"}
    services = Services.from_config(StudioConfig(store_dir=str(tmp_path / "store"), critic=current))
    try:
        with pytest.raises(InvalidInputError, match="no config.json"):
            critic_folder_spec(services, str(folder))
        (folder / "config.json").write_text("{}")
        assert critic_folder_spec(services, str(folder)) == {
            "backend": "transformers", "model": str(folder), "quantization": "4bit",
            "name": f"transformers critic ({folder})"}
        with pytest.raises(NotFoundError, match="No critic folder"):
            critic_folder_spec(services, str(tmp_path / "gone"))
    finally:
        services.close()
    fake = make_services(tmp_path / "b", ScriptedCritic([good()]))  # not transformers: only the folder
    assert critic_folder_spec(fake, str(folder)) == {"backend": "transformers", "model": str(folder),
                                                     "name": f"transformers critic ({folder})"}
