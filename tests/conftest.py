"""Shared fixtures: a small real Estimator on generated data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return tmp_path / "model"


@pytest.fixture
def estimator(model_dir: Path):
    import models

    return models.make_estimator(model_dir)


@pytest.fixture
def train_fn():
    import models

    return models.input_fn()


@pytest.fixture
def eval_fn():
    import models

    return models.input_fn(n=256, repeat=False, seed=1)
