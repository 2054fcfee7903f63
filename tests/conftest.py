import os

import pytest

# Tests run offline and deterministic; keep torch from spreading over more cores than CI has.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def cli():
    """Invoke the Typer app in-process; stderr is kept apart from stdout."""
    from typer.testing import CliRunner

    from edgecnn.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    return invoke


@pytest.fixture(scope="session")
def lenet_checkpoint(tmp_path_factory):
    """A LeNet-5 trained briefly on scikit-learn's digits: a real checkpoint with real data behind it.

    Shared by the export, bench and verify tests so the suite trains it once.
    """
    from edgecnn.train import TrainConfig, train

    out = tmp_path_factory.mktemp("lenet-digits")
    result = train(TrainConfig(model="lenet5", data="digits", out_dir=str(out), epochs=4, threads=2),
                   progress=False)
    return result.checkpoint
