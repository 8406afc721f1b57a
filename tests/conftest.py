"""Shared fixtures: every device-aware test runs on CPU, and on CUDA when one is present."""

from __future__ import annotations

import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Tests never read or write the user's real cache."""
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("TICKETLAB_QUICK", raising=False)
    monkeypatch.delenv("TICKETLAB_DEVICE", raising=False)
