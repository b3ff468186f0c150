"""The public API: ``import fastadapt`` gives what the README's library example uses, and that
example runs from any directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fastadapt

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_public_names_resolve() -> None:
    for name in fastadapt.__all__:
        assert getattr(fastadapt, name) is not None, name
    assert fastadapt.__version__ == "0.2.0"
    assert issubclass(fastadapt.TrainConfig, object)
    assert callable(fastadapt.train) and callable(fastadapt.evaluate)


def _library_example() -> str:
    """The README's library examples (the Python blocks under "As a library": train and
    evaluate, then the agent in a loop of one's own), in order."""
    text = README.read_text()
    section = text[text.index("As a library"):text.index("## Documentation")]
    blocks = section.split("```python")[1:]
    assert len(blocks) == 2, "the README's library section has two Python blocks"
    return "\n".join(block[:block.index("```")] for block in blocks)


def test_the_readme_library_example_runs_from_another_directory(tmp_path: Path) -> None:
    code = _library_example()
    assert "import fastadapt" in code
    tiny = code.replace('"run.iterations=20"', '"run.iterations=1", "env.horizon=5", '
                        '"maml-trpo.tasks_per_iteration=2", "maml-trpo.episodes_per_task=2", '
                        '"run.tensorboard=false"').replace("num_tasks=10", "num_tasks=2")
    assert tiny != code, "the example's settings changed: update this test's shrinking"
    done = subprocess.run([sys.executable, "-c", tiny + "\nprint(json.dumps(result['env']))"
                           if "import json" in tiny else
                           "import json\n" + tiny + "\nprint(json.dumps(result['env']))"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == "Navigation2D"
