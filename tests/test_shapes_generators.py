"""The shipped shapes-world generators (assets/shapes-t2i, assets/shapes-edit, and the RL proof's
base assets/shapes-t2i-words) and their builders.

The shipped pipelines are loaded with plain ``DiffusionPipeline.from_pretrained``: no project code
is involved in loading or sampling. The world module is used only to draw sources and prompts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

from bench.generator_accuracy import detailed_match, edit_match, generate, word_rates
from models.generator_diffusers import DiffusersGenerator
from models.shapes.analyzer import analyze
from models.shapes import world
from models.shapes.tiny_flux import TinyFluxConfig, corpus_words
from models.errors import ConfigError, InvalidInputError, NotFoundError
from models.shapes.train_generator import (
    EDIT_FOLDER, T2I_FOLDER, StepBatches, TrainConfig, Trainer, heldout_edits, heldout_scenes, parse_args,
)
from models.types import GenerationRequest

ASSETS = Path(__file__).resolve().parents[1] / "assets"
T2I = ASSETS / "shapes-t2i"
EDIT = ASSETS / "shapes-edit"
WORDS = ASSETS / "shapes-t2i-words"
STEPS = 3  # fewer than the shipped default, to keep the file fast; enough to test determinism


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def t2i() -> DiffusionPipeline:
    pipe = DiffusionPipeline.from_pretrained(T2I)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def edit() -> DiffusionPipeline:
    pipe = DiffusionPipeline.from_pretrained(EDIT)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _settings(folder: Path) -> dict[str, object]:
    defaults = json.loads((folder / "studio_defaults.json").read_text())
    return {
        "num_inference_steps": STEPS,
        "true_cfg_scale": defaults["guidance"],
        "negative_prompt": defaults["negative_prompt"],
        "height": defaults["height"],
        "width": defaults["width"],
        "max_sequence_length": defaults["max_sequence_length"],
    }


def _sample(pipe: DiffusionPipeline, prompt: str, seed: int) -> np.ndarray:
    image = pipe(prompt, generator=torch.Generator().manual_seed(seed), **_settings(T2I)).images[0]
    assert image.mode == "RGB" and image.size == (64, 64)
    return np.asarray(image)


def _edit(pipe: DiffusionPipeline, source: world.Scene, instruction: str, seed: int) -> np.ndarray:
    image = pipe(image=world.render(source), prompt=instruction, generator=torch.Generator().manual_seed(seed),
                 max_area=64 * 64, _auto_resize=False, **_settings(EDIT)).images[0]
    assert image.mode == "RGB" and image.size == (64, 64)
    return np.asarray(image)


def test_shipped_pipelines_are_standard_flux_classes(t2i: DiffusionPipeline, edit: DiffusionPipeline) -> None:
    assert type(t2i).__name__ == "FluxPipeline"
    assert type(edit).__name__ == "FluxKontextPipeline"


@pytest.mark.parametrize("first, second", [("red", "blue"), ("blue", "red")])
def test_t2i_binds_each_colour_to_the_object_a_detailed_prompt_gives_it(t2i: DiffusionPipeline, first: str,
                                                                       second: str) -> None:
    """Swapping two colour words swaps the colours in the picture: the binding the probe taught
    (before it, colours came from the pooled CLIP vector and landed on any object)."""
    prompt = f"a large {first} circle at the top left and a large {second} square at the bottom right"
    settings = {**_settings(T2I), "num_inference_steps": json.loads((T2I / "studio_defaults.json").read_text())["steps"]}
    images = t2i([prompt] * 8, generator=[torch.Generator().manual_seed(s) for s in range(8)], **settings).images
    assert sum(detailed_match(prompt, analyze(image)) for image in images) >= 6  # 8 of 8 when measured


def test_edit_recolours_the_named_object_and_keeps_the_rest(edit: DiffusionPipeline) -> None:
    """"make the red circle green" turns the red circle green and leaves the blue square: the
    named object and the change told apart (the previous edit model, at its true CFG 3, got 0% of
    held-out recolours right)."""
    source = world.Scene((world.ShapeObject("circle", "red", "large", "top left"),
                          world.ShapeObject("square", "blue", "large", "bottom right")))
    settings = {**_settings(EDIT), "num_inference_steps": json.loads((EDIT / "studio_defaults.json").read_text())["steps"]}
    exact = 0
    for colour in ("green", "yellow"):
        instruction = f"make the red circle {colour}"
        target = world.parse_edit(instruction, source)
        images = edit(image=[world.render(source)] * 8, prompt=[instruction] * 8, max_area=64 * 64,
                      _auto_resize=False, generator=[torch.Generator().manual_seed(s) for s in range(8)],
                      **settings).images
        exact += sum(edit_match(target, analyze(image)) for image in images)
    assert exact >= 7  # of 16; 10 when measured


def test_shipped_pipelines_load_in_float32(t2i: DiffusionPipeline) -> None:
    # the weights are stored in fp16 to stay small; a plain load must still give one dtype
    dtypes = {m.dtype for m in (t2i.transformer, t2i.vae, t2i.text_encoder, t2i.text_encoder_2)}
    assert dtypes == {torch.float32}


def test_the_word_base_draws_the_requested_letters_the_shipped_generator_leaves_to_chance(
        t2i: DiffusionPipeline) -> None:
    # 30 held-out scenes with a word, from 200 on (where the word stage was chosen), short prompts,
    # the shipped 16 sampling steps; on 200 such scenes: letters 0.407 against 0.05-0.07 (README, Words)
    scenes = [scene for scene in heldout_scenes(400)[200:] if scene.word][:30]
    prompts = [world.short_prompt(scene) for scene in scenes]
    settings = {**_settings(T2I), "num_inference_steps": 16}
    words = DiffusionPipeline.from_pretrained(WORDS)
    words.set_progress_bar_config(disable=True)
    rates = {name: word_rates(scenes, [analyze(im) for im in generate(pipe, prompts, settings, seed=0, batch=10)])
             for name, pipe in (("shipped", t2i), ("words", words))}
    assert rates["shipped"]["letters"] < 0.1  # chance is 1/26
    assert rates["words"]["letters"] >= 0.15 and rates["words"]["letters"] >= 2 * rates["shipped"]["letters"]


def test_t2i_same_seed_gives_identical_pixels(t2i: DiffusionPipeline) -> None:
    prompt = "a large red circle at the top left and a small blue square in the centre"
    assert np.array_equal(_sample(t2i, prompt, seed=7), _sample(t2i, prompt, seed=7))


def test_t2i_other_seed_gives_other_pixels(t2i: DiffusionPipeline) -> None:
    prompt = "two green triangles"
    assert not np.array_equal(_sample(t2i, prompt, seed=1), _sample(t2i, prompt, seed=2))


def test_t2i_draws_something_on_the_background(t2i: DiffusionPipeline) -> None:
    pixels = _sample(t2i, "a large purple star in the centre", seed=0).astype(float)
    assert pixels.std() > 10  # not a flat or empty image


def test_edit_returns_a_64px_image_deterministically(edit: DiffusionPipeline) -> None:
    source = world.Scene((world.ShapeObject("circle", "red", "large", "centre"),))
    first = _edit(edit, source, "make the red circle blue", seed=3)
    assert np.array_equal(first, _edit(edit, source, "make the red circle blue", seed=3))


def test_edit_without_instruction_keeps_the_source_close(edit: DiffusionPipeline) -> None:
    # an empty instruction was trained as "keep the image": the output stays near the source
    source = world.Scene((world.ShapeObject("square", "green", "large", "top left"),
                          world.ShapeObject("star", "orange", "small", "bottom right")))
    out = _edit(edit, source, "", seed=0).astype(float)
    other = np.asarray(world.render(world.Scene((world.ShapeObject("circle", "blue", "large", "centre"),))), float)
    src = np.asarray(world.render(source), dtype=float)
    assert np.abs(out - src).mean() < np.abs(other - src).mean()


def test_studio_backend_runs_the_shipped_folders_with_their_defaults() -> None:
    t2i = DiffusersGenerator(model=str(T2I), steps=STEPS).generate(
        GenerationRequest(task="t2i", prompt="a small green star", seed=5))
    assert [im.size for im in t2i.images] == [(64, 64)]
    assert (t2i.settings["guidance_kw"], t2i.settings["guidance"]) == ("true_cfg_scale", _settings(T2I)["true_cfg_scale"])
    source = world.render(world.Scene((world.ShapeObject("circle", "red", "large", "centre"),)))
    edited = DiffusersGenerator(model=str(EDIT), steps=STEPS).generate(
        GenerationRequest(task="edit", prompt="make the red circle blue", source_image=source, seed=5))
    assert [im.size for im in edited.images] == [(64, 64)]


WORLD_TEXTS = {
    "short": lambda scene, edit: world.short_prompt(scene),
    "detailed": lambda scene, edit: world.detailed_prompt(scene),
    "edit": lambda scene, edit: edit.instruction,
}


@pytest.mark.parametrize("form", sorted(WORLD_TEXTS))
def test_t5_tokenizer_round_trips_world_texts(t2i: DiffusionPipeline, form: str) -> None:
    tok = t2i.tokenizer_2
    for scene, edit in heldout_edits(20):
        text = WORLD_TEXTS[form](scene, edit)
        ids = tok(text).input_ids
        assert tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == text


def test_clip_tokenizer_has_one_token_per_world_word(t2i: DiffusionPipeline) -> None:
    texts = [world.detailed_prompt(s) for s in heldout_scenes(20)]
    for word in corpus_words(texts):
        assert len(t2i.tokenizer.tokenize(word)) == 1, word


def test_clip_tokenizer_round_trips_world_prompts_up_to_case_and_spacing(t2i: DiffusionPipeline) -> None:
    tok = t2i.tokenizer
    for scene in heldout_scenes(20):
        text = world.detailed_prompt(scene)
        decoded = tok.decode(tok(text).input_ids, skip_special_tokens=True)
        assert decoded.replace(" ", "") == text.lower().replace(" ", "")
        assert len(tok(text).input_ids) <= tok.model_max_length == 77


def _tiny_trainer(tmp_path: Path, **changes: object) -> Trainer:
    cfg = TrainConfig(out=str(tmp_path / "out"), run_dir=str(tmp_path / "run"), batch_t2i=4, batch_edit=2,
                      vae_minutes=0.0, minutes=5.0, model=TinyFluxConfig.smoke(), **changes)
    trainer = Trainer(cfg)
    trainer.state.phase = "flux"
    trainer.parts.vae.eval().requires_grad_(False)
    return trainer


def test_tiny_build_trains_one_step(tmp_path: Path) -> None:
    trainer = _tiny_trainer(tmp_path, binding_probe_weight=0.0, edit_probe_weight=0.0)
    before = [p.detach().clone() for p in trainer.parts.transformer.parameters()]
    losses = trainer.flux_step()
    assert set(losses) == {"t2i", "edit"} and all(np.isfinite(v) for v in losses.values())
    after = list(trainer.parts.transformer.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert trainer.state.step == 1


def test_a_single_task_run_trains_and_exports_only_its_pipeline(tmp_path: Path) -> None:
    for task, folder in (("t2i", T2I_FOLDER), ("edit", EDIT_FOLDER)):
        trainer = _tiny_trainer(tmp_path / task, tasks=task)
        probe = {"t2i": "binding_probe", "edit": "edit_probe"}[task]  # each task's probe reads its texts
        assert set(trainer.probes) == {probe}
        assert set(trainer.flux_step()) - {probe} == {task}
        trainer.export()
        assert [p.name for p in (tmp_path / task / "out").iterdir()] == [folder]
        assert DiffusionPipeline.from_pretrained(tmp_path / task / "out" / folder) is not None


def test_tasks_must_be_known() -> None:
    with pytest.raises(ConfigError, match="subset of t2i, edit"):
        TrainConfig(tasks="t2i,video")
    with pytest.raises(ConfigError, match="subset of t2i, edit"):
        TrainConfig(tasks="")
    assert TrainConfig(tasks="edit, t2i").task_list == ["t2i", "edit"]


def test_checkpoint_resumes_step_and_weights(tmp_path: Path) -> None:
    trainer = _tiny_trainer(tmp_path)
    trainer.flux_step()
    trainer.save()
    resumed = Trainer(trainer.cfg)
    assert (resumed.state.phase, resumed.state.step) == ("flux", 1)
    for a, b in zip(trainer.parts.transformer.parameters(), resumed.parts.transformer.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="trains t2i,edit, but this run asks for edit"):
        Trainer(dataclasses.replace(trainer.cfg, tasks="edit"))


def test_init_from_continues_an_exported_folder_from_its_weights(tmp_path: Path) -> None:
    first = _tiny_trainer(tmp_path / "first", tasks="t2i")
    first.flux_step()
    folder = first.export()[0]
    exported = DiffusionPipeline.from_pretrained(folder, dtype=torch.float32)
    continued = Trainer(dataclasses.replace(first.cfg, run_dir=str(tmp_path / "next"), init_from=str(folder), seed=1))
    assert (continued.state.phase, continued.state.step) == ("flux", 0)  # no VAE phase, a fresh schedule
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        loaded, saved = getattr(continued.parts, name).state_dict(), getattr(exported, name).state_dict()
        assert all(torch.equal(loaded[k], saved[k]) for k in saved), name
    assert continued.parts.vae.config.scaling_factor == exported.vae.config.scaling_factor
    for ema, model in zip(continued.ema, continued.trainable):  # the EMA starts from the loaded weights too
        assert all(torch.equal(a, b) for a, b in zip(ema.parameters(), model.parameters()))
    before = [p.detach().clone() for p in continued.parts.transformer.parameters()]
    continued.flux_step()
    assert any(not torch.equal(a, b) for a, b in zip(before, continued.parts.transformer.parameters()))
    continued.save()  # a checkpoint in the run dir wins over --init-from: an interrupted continuation resumes
    assert Trainer(continued.cfg).state.step == 1


def test_init_from_needs_a_pipeline_folder_of_the_same_sizes(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="not an exported pipeline folder"):
        _tiny_trainer(tmp_path / "a", init_from=str(tmp_path))
    folder = _tiny_trainer(tmp_path / "b", tasks="t2i").export()[0]
    wider = dataclasses.replace(TinyFluxConfig.smoke(), heads=TinyFluxConfig.smoke().heads + 1)
    with pytest.raises(ConfigError, match="transformer of .* does not fit the model sizes"):
        Trainer(TrainConfig(run_dir=str(tmp_path / "c"), init_from=str(folder), model=wider))
    with pytest.raises(ConfigError, match="leaves no time for the transformer after the export reserve"):
        TrainConfig(init_from=str(folder), minutes=1.0)
    assert TrainConfig(init_from=str(folder), minutes=5.0).vae_minutes == 8.0  # no VAE phase to fit in the budget


def test_training_batches_do_not_depend_on_the_number_of_loader_workers(tmp_path: Path) -> None:
    trainer = _tiny_trainer(tmp_path)
    data = StepBatches(trainer.cfg, trainer.stream, start=5)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=2)
    for step, (prompts, e_prompts, images) in zip(range(5, 9), loader):
        expected = data.batch(step)
        assert (prompts, e_prompts) == expected[:2] and torch.equal(images, expected[2])
    assert images.shape == (4 + 2, 64, 64, 3) and images.dtype == torch.uint8


def test_word_share_and_word_band_weight_are_settings(tmp_path: Path) -> None:
    default = _tiny_trainer(tmp_path / "default")
    wordy = _tiny_trainer(tmp_path / "wordy", word_prob=1.0, word_band_weight=4.0)
    assert torch.equal(default._token_weights, torch.ones(64))  # the plain mean squared error
    rows = wordy._token_weights.view(8, 8)  # 8 x 8 packed tokens of 8 x 8 pixels; the band is the bottom 20%
    assert rows[6:].eq(4.0).all() and rows[:6].eq(1.0).all()
    scenes = StepBatches(wordy.cfg, wordy.stream, 0).samples(0).scenes
    assert all(scene.word for scene in scenes)
    assert sum(bool(s.word) for step in range(10) for s in StepBatches(default.cfg, default.stream, 0).samples(step).scenes) < 40
    losses = wordy.flux_step()
    assert np.isfinite(losses["t2i"])
    for bad in ({"word_prob": 1.5}, {"word_band_weight": 0.0}):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)


def test_binding_probe_targets_come_from_detailed_prompts_only() -> None:
    from models.shapes.text_probes import cell_targets

    targets = cell_targets("a large red circle at the top left and a small blue star in the centre")
    assert targets is not None and targets.shape == (9, 3)
    top_left, centre = world.POSITIONS.index("top left"), world.POSITIONS.index("centre")
    assert targets[top_left].tolist() == [1 + world.SHAPES.index("circle"), 1 + list(world.COLOURS).index("red"),
                                          1 + world.SIZES.index("large")]
    assert targets[centre, 0] == 1 + world.SHAPES.index("star")
    assert int((targets.sum(dim=1) == 0).sum()) == 7  # the other cells are empty
    assert cell_targets("two red circles and a blue square") is None
    assert cell_targets("") is None


def test_edit_probe_targets_tell_the_named_object_from_the_change() -> None:
    from models.shapes.text_probes import edit_targets

    def one_based(values: tuple[str, ...], name: str) -> int:
        return 1 + values.index(name)

    red, blue = one_based(tuple(world.COLOURS), "red"), one_based(tuple(world.COLOURS), "blue")
    circle = one_based(world.SHAPES, "circle")
    recolour = edit_targets("make the red circle blue").tolist()
    assert recolour[:4] == [circle, red, 0, 0]  # the named object: no size or cell said
    assert recolour[4:8] == [0, blue, 0, 0]  # the change: only the new colour
    assert recolour[-1] == world.EDIT_KINDS.index("recolour")
    move = edit_targets("move the red circle at the top left to the centre").tolist()
    assert move[3] == one_based(world.POSITIONS, "top left") and move[7] == one_based(world.POSITIONS, "centre")
    add = edit_targets("add a small green star at the bottom right").tolist()
    assert add[:4] == [0, 0, 0, 0] and add[4] == one_based(world.SHAPES, "star")
    word = edit_targets('change the word to "AB"').tolist()
    assert word[8:11] == [1, 2, 0] and word[-1] == world.EDIT_KINDS.index("word")
    assert edit_targets("remove the word").tolist()[8:11] == [0, 0, 0]
    assert edit_targets("") is None
    with pytest.raises(InvalidInputError, match="Could not read the edit instruction"):
        edit_targets("paint it black")  # a bug in the training data, not a sample to skip


@pytest.mark.parametrize("task,probe,weight", [("t2i", "binding_probe", "binding_probe_weight"),
                                               ("edit", "edit_probe", "edit_probe_weight")])
def test_a_probe_trains_with_the_text_encoder_and_must_match_on_resume(
        tmp_path: Path, task: str, probe: str, weight: str) -> None:
    probed = _tiny_trainer(tmp_path, tasks=task, **{weight: 0.3})
    probe_before = [p.detach().clone() for p in probed.probes[probe].parameters()]
    steps = [probed.flux_step() for _ in range(3)]  # enough for some probed prompts in batches of 4 and 2
    probe_losses = [losses[probe] for losses in steps if probe in losses]
    assert probe_losses and all(np.isfinite(v) for v in probe_losses)
    assert any(not torch.equal(a, b) for a, b in zip(probe_before, probed.probes[probe].parameters()))
    probed.save()
    with pytest.raises(ConfigError, match="--binding-probe-weight, --edit-probe-weight"):
        Trainer(dataclasses.replace(probed.cfg, **{weight: 0.0}))
    assert set(Trainer(probed.cfg).probes) == {probe}


def test_model_sizes_from_the_command_line() -> None:
    cfg = parse_args(["--model-json", '{"heads": 4, "axes_dims_rope": [8, 12, 12]}', "--steps", "10"])
    assert (cfg.model.heads, cfg.model.axes_dims_rope, cfg.steps) == (4, (8, 12, 12), 10)
    with pytest.raises(ConfigError, match="--model-json"):
        parse_args(["--model-json", '{"layers": 9}'])


def test_exported_scheduler_samples_with_the_training_noise_shift(tmp_path: Path) -> None:
    trainer = _tiny_trainer(tmp_path)
    assert trainer.parts.scheduler.config.shift == trainer.cfg.sigma_shift == 3.0
    shipped = json.loads((T2I / "scheduler" / "scheduler_config.json").read_text())
    assert shipped["shift"] == trainer.cfg.sigma_shift


def test_vae_ceiling_reads_back_the_shipped_vae(capsys: pytest.CaptureFixture[str]) -> None:
    """The ceiling bench judges the shipped VAE: most held-out renders come back exact, and a
    wrong object is named by what it was and what it became."""
    from bench.vae_ceiling import main, wrong_objects

    assert main(["--n", "20", "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["n"] == 20 and report["exact_scene"] >= 0.8, report
    star = world.ShapeObject("star", "red", "small", "centre")
    read = world.ShapeObject("diamond", "red", "small", "centre")
    assert wrong_objects(world.Scene((star,)), [read]) == ["small red star -> small red diamond"]
    assert wrong_objects(world.Scene((star,)), []) == ["small star -> missing"]
    assert wrong_objects(world.Scene((star,)), [star]) == []


def test_prompt_reliance_tells_which_encoder_reads_the_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped model reads another scene's prompt as worse (its loss rises), and each alteration
    is reported for both encoders, T5 alone and CLIP alone."""
    from bench.prompt_reliance import main, permute

    assert main(["--n", "6", "--sigmas", "0.9", "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    row = report["sigma_0.9"]
    assert report["n"] == 6 and row["loss"] > 0
    assert row["scene"]["both"] > 0.05, row
    assert set(row["colours"]) == {"both", "t5", "pooled"}
    red = world.ShapeObject("circle", "red", "small", "top")
    blue = world.ShapeObject("square", "blue", "large", "centre")
    swapped = permute(world.Scene((red, blue)), "colour", random.Random(0))
    assert [(o.shape, o.colour, o.position) for o in swapped.objects] == [("circle", "blue", "top"), ("square", "red", "centre")]
    same = world.Scene((red, dataclasses.replace(blue, colour="red")))
    assert permute(same, "colour", random.Random(0)) == same  # nothing to permute: unchanged, no endless loop
