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
