"""The multi-task guide's MultiTaskModel example (docs/multi-task.md, linked from the README) runs as written, and
learns."""

import re
from pathlib import Path

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "multi-task.md"


def test_multitask_guide_example_runs(capsys):
    text = GUIDE.read_text()
    match = re.search(r"<!-- example: MultiTaskModel.*?-->\n```python\n(.*?)```", text, re.S)
    assert match, "docs/multi-task.md lost its MultiTaskModel example block"
    namespace = {}
    exec(compile(match.group(1), "docs/multi-task.md example", "exec"), namespace)
    out = capsys.readouterr().out
    losses = [float(v) for v in re.findall(r"Loss = ([0-9.]+)", out)]
    assert len(losses) == 20 and losses[-1] < losses[0]
    assert set(namespace["predictions"]) == {"task1", "task2", "task3"}
    assert namespace["predictions"]["task1"].shape == (64,)
    assert namespace["mt_model"].weighting_name == "static"
