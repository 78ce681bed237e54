import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the layouts helper module


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small synthetic benchmark, generated once for the session (read-only for tests)."""
    from rvos.data.synth.generate import SynthSpec, write_benchmark

    root = tmp_path_factory.mktemp("synth")
    write_benchmark(root, SynthSpec(train=12, valid_u=6, valid=3, seed=3), progress=False)
    return root
