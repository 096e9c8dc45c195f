"""A verifier trained once on the project's own sample signatures, for the tests that need one."""

from pathlib import Path

import numpy as np
import pytest

from inkvoice.signature.dataset import load_signatures
from inkvoice.signature.features import check_parameters, extract
from inkvoice.signature.model_file import save_verifier
from inkvoice.signature.training import train_verifier

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "signatures"
TRAINING_WRITERS = ("writer1", "writer2", "writer3", "writer4")


@pytest.fixture(scope="session")
def samples_dir():
    return SAMPLES


@pytest.fixture(scope="session")
def sample_features():
    """(signatures, features) of every sample signature."""
    signatures = load_signatures(SAMPLES)
    parameters = check_parameters({})
    return signatures, np.stack([extract(s.path, **parameters) for s in signatures])


@pytest.fixture(scope="session")
def sample_model(tmp_path_factory, sample_features):
    """(path, verifier) of a model trained on sample writers 1-4 (writers 5 and 6 stay unseen)."""
    signatures, X = sample_features
    rows = [i for i, s in enumerate(signatures) if s.writer in TRAINING_WRITERS]
    verifier, figures, settings = train_verifier(
        X[rows], np.array([signatures[i].writer for i in rows]), np.array([signatures[i].genuine for i in rows]),
        check_parameters({}), {"n_references": 6, "n_folds": 4}, np.random.default_rng(0),
    )
    path = tmp_path_factory.mktemp("model") / "samples.npz"
    save_verifier(path, verifier, {**settings.to_dict(), "writers": list(TRAINING_WRITERS)}, figures)
    return path, verifier
