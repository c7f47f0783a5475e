"""The critic protocol: prompts, the one tolerant parser, the scoring policy, and the runner that
turns any text backend into a critic. Imports stay light (no torch, no httpx)."""

from models.critic.parser import parse_critique, parse_pairwise
from models.critic.prompts import build_pairwise_prompt, build_pointwise_prompt
from models.critic.runner import ProtocolCritic
from models.critic.scoring import PositionCheck, ScoringPolicy, position_consistency
from models.critic.templates import PromptTemplates, load_templates
from models.errors import CritiqueParseError
from models.types import Critique, CritiqueFailure, PairwiseJudgement

__all__ = [
    "Critique",
    "CritiqueFailure",
    "CritiqueParseError",
    "PairwiseJudgement",
    "PositionCheck",
    "PromptTemplates",
    "ProtocolCritic",
    "ScoringPolicy",
    "build_pairwise_prompt",
    "build_pointwise_prompt",
    "load_templates",
    "parse_critique",
    "parse_pairwise",
    "position_consistency",
]
