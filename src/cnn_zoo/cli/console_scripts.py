"""The console commands `cnn-zoo-<name>`: each `main()` loads its command's module only when the work starts.

So `cnn-zoo-evaluate --help` (or a mistyped override) answers in about a second instead of importing torch,
Lightning and the command's own pieces first. `python -m cnn_zoo.<name>` runs the same commands from their
modules.
"""

from __future__ import annotations

from cnn_zoo.cli.hydra_entry import entry_point

evaluate = entry_point("cnn_zoo.evaluate:evaluate", "evaluate")
predict = entry_point("cnn_zoo.predict:predict", "predict")
export = entry_point("cnn_zoo.export:export", "export")
explain = entry_point("cnn_zoo.explain:explain", "explain")


def train() -> object:
    from cnn_zoo.train import main  # Hydra and the config only: train loads torch when its work starts

    return main()


def report() -> None:
    from cnn_zoo.report import main

    main()


def prepare() -> None:
    from cnn_zoo.prepare import main

    main()
