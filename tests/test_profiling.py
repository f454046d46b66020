"""The trainer's profiler: a no-op one when none is asked for, Lightning's own when one is."""

from __future__ import annotations

from lightning.pytorch.profilers import PassThroughProfiler, SimpleProfiler

from cnn_zoo.runtime.profiling import NoProfiler
from cnn_zoo.training.pipeline import build_trainer


def test_no_profiler_contexts_nest_and_repeat_and_let_errors_through() -> None:
    profiler = NoProfiler()
    entered = []
    with profiler.profile("outer"), profiler.profile("inner"):
        entered.append(1)
    with profiler.profile("outer"):
        entered.append(2)
    try:
        with profiler.profile("failing"):
            raise KeyError("kept")
    except KeyError as err:
        entered.append(str(err))
    assert entered == [1, 2, "'kept'"]
    assert isinstance(profiler, PassThroughProfiler) and profiler.summary() == ""


def test_the_trainer_gets_no_profiler_unless_one_is_asked_for(compose_cfg) -> None:
    trainer = build_trainer(compose_cfg("callbacks=none", "logger=none"))
    assert type(trainer.profiler) is NoProfiler
    trainer = build_trainer(compose_cfg("debug=profiler"))
    assert isinstance(trainer.profiler, SimpleProfiler)
