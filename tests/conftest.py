from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def default_model() -> Path:
    from mpqc.models import zoo_path

    return zoo_path()


@pytest.fixture(scope="session")
def prepared_default(default_model):
    import mpqc

    return mpqc.prepare(default_model)
