"""The example notebook (docs/examples/notebook.py, percent format) runs from start to end, with fewer steps."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).parent.parent / "docs" / "examples" / "notebook.py"


@pytest.mark.slow
def test_the_example_notebook_runs_and_writes_what_it_says(tmp_path):
    env = {**os.environ, "ARBLOCKS_EXAMPLE_STEPS": "30", "ARBLOCKS_EXAMPLE_DIR": str(tmp_path), "ARBLOCKS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(NOTEBOOK)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "causal: True" in done.stdout and "step 30:" in done.stdout
    for name in ("samples.png", "completions.png", "learning_curve.png", "checkpoint.pt", "metrics.csv", "samples/step_30.png"):
        assert (tmp_path / "run" / name).stat().st_size > 0, name
    assert (tmp_path / "averaged" / "checkpoint.pt").is_file()


def test_the_notebook_is_in_the_percent_format_with_markdown_cells():
    text = NOTEBOOK.read_text()
    assert text.count("# %% [markdown]") >= 6 and text.count("# %%\n") >= 6
