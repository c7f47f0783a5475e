"""Settings of the studio engine: one Generate-Critique-Refine session (``LoopSettings``) and the
app (``StudioConfig``). Both round-trip through plain dicts; an unknown key, a wrong type or a
value out of range raises ``ConfigError`` with what was received."""

from __future__ import annotations

import json
import logging
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from models.critic.scoring import ScoringPolicy
from models.errors import ConfigError
from models.types import MAX_IMAGES_PER_REQUEST, TASKS, task_dimensions

logger = logging.getLogger(__name__)

SeedPolicy = Literal["fixed", "vary"]
RewriterKind = Literal["critic", "llm", "human"]
RepeatPolicy = Literal["vary_seed", "restate", "stop"]
JudgeAgainst = Literal["round", "request"]
FirstPrompt = Literal["request", "expanded"]

#: Seed offset between rounds under the "vary" seed policy.
SEED_STRIDE = 1000
#: Largest seed accepted (every generator and the store can hold it and the seeds after it).
MAX_SEED = 2**32 - 1

DIMENSION_KEYS: frozenset[str] = frozenset(d.key for task in TASKS for d in task_dimensions(task))


def _default_thresholds() -> dict[str, float]:
    return {"text_faithfulness": 3.5, "physical_quality": 3.5, "text_rendering": 3.5}


@dataclass
class LoopSettings:
    """How a Generate-Critique-Refine session runs.

    ``thresholds`` maps a dimension key to the score (1..4) it must reach; the session stops when
    every listed dimension of the task reaches it (a dimension the critic marks N/A counts as met).
    ``plateau_rounds``: stop after this many rounds in a row without a gain of ``min_gain`` in the
    [0, 1] score over the best so far (0 turns the rule off). ``stop_on_regression``: stop when a
    round's best scores below the previous round's best. ``seed_policy``: "fixed" uses ``seed``
    every round, "vary" uses ``seed + (round - 1) * 1000``. ``steps``/``guidance``/``width``/
    ``height``: ``None`` means the generator's defaults. ``rewriter``: where the next prompt comes
    from ("critic": the critique's refined request, "llm": the configured rewriter model, "human":
    the loop pauses for a person). ``policy``: keyword settings of the critic's ``ScoringPolicy``
    (empty: the default policy the critic scored with).

    ``on_repeat``: what a round does when its prompt was already generated with its seed (the
    same image would come back): "vary_seed" draws from a seed not yet used with that prompt,
    "restate" first re-states the prompt with what the critique says failed first
    (``studio.restate``) and varies the seed only when that gives nothing new, "stop" ends the
    session ("exhausted"). ``max_tries_per_prompt``: the most rounds one prompt may be generated
    in; the session stops ("exhausted") rather than try it again (0: no limit). ``judge_against``:
    the critic judges each round's images against that round's prompt ("round") or against the
    prompt the session started from ("request", the default), so that scores of different rounds
    compare and the critic's refined request may change what the user left open.
    ``first_prompt``: round 1 generates from the user's request ("request") or from the critic's
    expansion of it into the generator's detailed form, written before any image is seen
    ("expanded", the default; a critic without ``expand_request`` keeps the request).

    Example: ``LoopSettings.from_dict({"max_rounds": 5, "candidates": 2})``
    """

    max_rounds: int = 3
    candidates: int = 1
    thresholds: dict[str, float] = field(default_factory=_default_thresholds)
    plateau_rounds: int = 1
    min_gain: float = 0.01
    stop_on_regression: bool = False
    seed: int = 0
    seed_policy: SeedPolicy = "fixed"
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    rewriter: RewriterKind = "critic"
    policy: dict[str, Any] = field(default_factory=dict)
    on_repeat: RepeatPolicy = "vary_seed"
    max_tries_per_prompt: int = 3
    judge_against: JudgeAgainst = "request"
    first_prompt: FirstPrompt = "expanded"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ConfigError`` when a value has the wrong type or is out of range."""
        _check_int("max_rounds", self.max_rounds, low=1)
        _check_int("candidates", self.candidates, low=1, high=MAX_IMAGES_PER_REQUEST)
        _check_int("plateau_rounds", self.plateau_rounds, low=0)
        _check_float("min_gain", self.min_gain, low=0.0, high=1.0)
        _check_bool("stop_on_regression", self.stop_on_regression)
        _check_int("seed", self.seed, low=0, high=MAX_SEED)
        _check_choice("seed_policy", self.seed_policy, get_args(SeedPolicy))
        _check_choice("rewriter", self.rewriter, get_args(RewriterKind))
        _check_choice("on_repeat", self.on_repeat, get_args(RepeatPolicy))
        _check_int("max_tries_per_prompt", self.max_tries_per_prompt, low=0)
        _check_choice("judge_against", self.judge_against, get_args(JudgeAgainst))
        _check_choice("first_prompt", self.first_prompt, get_args(FirstPrompt))
        for name in ("steps", "width", "height"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), low=1)
        if self.guidance is not None:
            _check_float("guidance", self.guidance, low=0.0, high=100.0)
        if not isinstance(self.thresholds, dict):
            raise ConfigError(f"thresholds must be a mapping of dimension to score, got {self.thresholds!r}.")
        for key, value in self.thresholds.items():
            if key not in DIMENSION_KEYS:
                raise ConfigError(
                    f"thresholds: unknown dimension {key!r}; use one of {sorted(DIMENSION_KEYS)}."
                )
            _check_float(f"thresholds[{key!r}]", value, low=1.0, high=4.0)
        if not isinstance(self.policy, dict):
            raise ConfigError(f"policy must be a mapping of ScoringPolicy settings, got {self.policy!r}.")
        self.scoring_policy()

    def scoring_policy(self) -> ScoringPolicy:
        """The ``ScoringPolicy`` that ``policy`` describes (the default policy when it is empty)."""
        return ScoringPolicy.from_dict(self.policy) if self.policy else ScoringPolicy.default()

    def seed_for_round(self, round_index: int) -> int:
        """The first seed of round ``round_index`` (1-based) under the seed policy."""
        if self.seed_policy == "fixed":
            return self.seed
        return self.seed + (round_index - 1) * SEED_STRIDE

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "LoopSettings":
        """Build from a plain dict; raise ``ConfigError`` on an unknown key or a bad value."""
        return _from_dict(cls, values)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that ``from_dict`` turns back into equal settings."""
        return asdict(self)


@dataclass
class StudioConfig:
    """App-level settings: where the session store lives and which backends to build.

    A backend spec is a dict ``{"backend": name, **keyword settings}`` where ``name`` is one of
    ``models.registry.BACKENDS`` for the role (or a ``"package.module:Class"`` path); ``None``
    means the role is not configured (e.g. no editing model).

    Example: ``StudioConfig.from_file("studio.toml")``
    """

    store_dir: str = ".studio"
    critic: dict[str, Any] | None = None
    t2i_generator: dict[str, Any] | None = None
    edit_generator: dict[str, Any] | None = None
    rewriter: dict[str, Any] | None = None
    loop: LoopSettings = field(default_factory=LoopSettings)

    def __post_init__(self) -> None:
        if not isinstance(self.store_dir, str) or not self.store_dir.strip():
            raise ConfigError(f"store_dir must be a folder path, got {self.store_dir!r}.")
        for role in ("critic", "t2i_generator", "edit_generator", "rewriter"):
            spec = getattr(self, role)
            if spec is None:
                continue
            if not isinstance(spec, dict) or not isinstance(spec.get("backend"), str):
                raise ConfigError(
                    f"{role}: expected a dict with a 'backend' name and its settings, got {spec!r}."
                )
        if isinstance(self.loop, dict):
            self.loop = LoopSettings.from_dict(self.loop)
        if not isinstance(self.loop, LoopSettings):
            raise ConfigError(f"loop must be a mapping of loop settings, got {self.loop!r}.")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "StudioConfig":
        """Build from a plain dict; raise ``ConfigError`` on an unknown key or a bad value."""
        return _from_dict(cls, values)

    @classmethod
    def from_file(cls, path: str | Path) -> "StudioConfig":
        """Read a ``.toml`` or ``.json`` file. Raises ``ConfigError`` when it is missing or malformed."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"No config file at {path}.")
        try:
            if path.suffix == ".toml":
                values = tomllib.loads(path.read_text(encoding="utf-8"))
            elif path.suffix == ".json":
                values = json.loads(path.read_text(encoding="utf-8"))
            else:
                raise ConfigError(f"{path}: use a .toml or .json config file.")
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path} is not valid {path.suffix[1:].upper()}: {e}") from e
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that ``from_dict`` turns back into an equal config."""
        return asdict(self)


def _from_dict(cls: type, values: dict[str, Any]) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{cls.__name__}: expected a mapping of settings, got {type(values).__name__}.")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown setting(s) {unknown}; known settings are {sorted(known)}.")
    return cls(**values)


def _check_int(name: str, value: object, *, low: int | None = None, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, got {value!r}.")
    _check_range(name, value, low, high)


def _check_float(name: str, value: object, *, low: float | None = None, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError(f"{name} must be a number, got {value!r}.")
    _check_range(name, value, low, high)


def _check_range(name: str, value: float, low: float | None, high: float | None) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name} must be {bounds}, got {value!r}.")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}.")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}.")
