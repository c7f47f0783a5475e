"""The backend registry: names, plugin paths, clear errors."""

from __future__ import annotations

import pytest

from models.errors import ConfigError
from models.registry import backend_class, load_backend
from models.rewriter import CriticRewriter


def test_load_backend_by_registered_name_passes_the_backends_own_name() -> None:
    rewriter = load_backend("rewriter", "critic", name="my critic rewriter")
    assert isinstance(rewriter, CriticRewriter)
    assert rewriter.name == "my critic rewriter"


def test_backend_class_accepts_a_module_class_path() -> None:
    assert backend_class("rewriter", "models.rewriter:CriticRewriter") is CriticRewriter


@pytest.mark.parametrize(
    ("role", "backend", "message"),
    [
        ("critic", "no-such-backend", "Unknown critic backend 'no-such-backend'"),
        ("painter", "shapes", "Unknown backend role 'painter'"),
        ("critic", "no_such_module_xyz:Thing", "could not be imported"),
        ("rewriter", "models.rewriter:NoSuchClass", "has no class NoSuchClass"),
    ],
)
def test_backend_class_errors_name_what_was_wrong(role: str, backend: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        backend_class(role, backend)
