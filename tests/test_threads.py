"""Concurrent calls: the sequential results, torch intact, and the model untouched (issue 9)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

import pytest
import torch
import torch.fx._symbolic_trace as symbolic_trace
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import fxcfp
from tests.models import assert_unchanged, make_resnet3d, make_se, snapshot
from tests.test_trace import ShapeBranch, TwoPathways


def _result(pyramid: fxcfp.Pyramid) -> tuple:
    return pyramid.target, round(pyramid.probability, 6), sorted(pyramid.graph.edges)


def _in_threads(jobs: list[Callable[[], object]]) -> list[object]:
    """Run the jobs at once (a barrier lines them up); re-raise the first error."""
    results: list[object] = [None] * len(jobs)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(jobs))

    def work(i: int) -> None:
        try:
            barrier.wait()
            results[i] = jobs[i]()
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _plain_forward() -> bool:
    """A fresh model's forward, as any other code of the process would run it."""
    for _ in range(10):
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        model(torch.randn(1, 3, 8, 8))
    return True


def _torch_intact() -> None:
    assert nn.Module.__call__ is symbolic_trace._orig_module_call
    assert nn.Module.__getattr__ is symbolic_trace._orig_module_getattr
    assert _plain_forward()


def _models() -> list[tuple[nn.Module, torch.Tensor | list[torch.Tensor]]]:
    """Four models covering both tracers: fx, an fx fallback to export, a list input."""
    torch.manual_seed(0)
    resnet, shape = make_resnet3d()
    se, se_shape = make_se()
    torch.manual_seed(1)
    branch, pathways = ShapeBranch(), TwoPathways()
    return [(resnet, torch.randn(shape)[0]), (se, torch.randn(se_shape)[0]),
            (branch, torch.randn(3, 4, 6, 6)),
            (pathways, [torch.randn(3, 4, 6, 6), torch.randn(3, 8, 6, 6)])]


@functools.cache
def _sequential() -> tuple[tuple, ...]:
    return tuple(_result(fxcfp.analyze(model, clip, threshold=0.3)) for model, clip in _models())


def test_first_calls_from_four_threads_match_the_sequential_results():
    made = _models()  # new model objects: every call in the threads is a first call
    snaps = [snapshot(model) for model, _ in made]
    jobs = [lambda m=m, c=c: _result(fxcfp.analyze(m, c, threshold=0.3)) for m, c in made]
    results = _in_threads([*jobs, _plain_forward])
    assert tuple(results[:4]) == _sequential()
    for (model, _), snap in zip(made, snaps):
        assert_unchanged(model, snap)
    _torch_intact()


def test_later_calls_on_one_shared_analyzer_from_four_threads():
    torch.manual_seed(0)
    model, shape = make_resnet3d()
    clips = [torch.randn(shape)[0] for _ in range(4)]
    analyzer = fxcfp.Analyzer(model)
    sequential = [_result(analyzer.analyze(clip, threshold=0.3)) for clip in clips]
    snap = snapshot(model)
    results = _in_threads([lambda c=c: [_result(analyzer.analyze(c, threshold=0.3))
                                        for _ in range(3)] for c in clips])
    assert results == [[want] * 3 for want in sequential]
    assert_unchanged(model, snap)
    _torch_intact()


def test_second_calls_from_four_threads_write_the_capture_code_once():
    from fxcfp._trace import code_pending

    torch.manual_seed(0)
    model, shape = make_resnet3d()
    clips = [torch.randn(shape)[0] for _ in range(4)]
    sequential = [_result(fxcfp.Analyzer(model).analyze(clip, threshold=0.3)) for clip in clips]
    analyzer = fxcfp.Analyzer(model)
    analyzer.analyze(clips[0], threshold=0.3)  # a first call: the channel-map pass's values
    capture = next(iter(analyzer._plans.values())).capture
    assert code_pending(capture)
    graph = capture.graph
    generate = graph.python_code
    written: list[int] = []

    def counted(*args: object, **kwargs: object) -> object:
        written.append(1)
        return generate(*args, **kwargs)

    graph.python_code = counted  # type: ignore[method-assign]
    results = _in_threads([lambda c=c: _result(analyzer.analyze(c, threshold=0.3))
                           for c in clips])
    assert results == sequential
    assert len(written) == 1 and not code_pending(capture)
    _torch_intact()


def test_a_train_mode_model_under_concurrent_calls_keeps_its_flags_and_statistics():
    torch.manual_seed(0)
    model, shape = make_resnet3d()
    twin, _ = make_resnet3d()
    model.train()
    clips = [torch.randn(shape)[0] for _ in range(4)]
    sequential = [_result(fxcfp.analyze(twin.eval(), clip, threshold=0.3)) for clip in clips]
    snap = snapshot(model)
    batches = {name: int(b) for name, b in model.named_buffers() if "num_batches" in name}
    results = _in_threads([lambda c=c: [_result(fxcfp.analyze(model, c, threshold=0.3))
                                        for _ in range(3)] for c in clips])
    assert results == [[want] * 3 for want in sequential]
    assert_unchanged(model, snap)  # running statistics, training flags, hooks
    assert all(m.training for m in model.modules())
    assert batches == {name: int(b) for name, b in model.named_buffers() if "num_batches" in name}


@settings(deadline=None, max_examples=2)
@given(order=st.permutations(range(4)), delays=st.lists(st.integers(0, 3), min_size=4,
                                                         max_size=4))
def test_random_interleavings_of_first_calls(order, delays):
    """Threads start their first call in a random order, some after a few plain forwards."""
    made = _models()

    def job(i: int) -> tuple:
        for _ in range(delays[i]):
            _plain_forward()
        model, clip = made[i]
        return _result(fxcfp.analyze(model, clip, threshold=0.3))

    results = _in_threads([lambda i=i: job(i) for i in order])
    assert tuple(results[order.index(i)] for i in range(4)) == _sequential()
    _torch_intact()


def test_tracing_passes_other_threads_module_calls_straight_through():
    """While one thread traces, another thread's forward runs the real modules."""
    torch.manual_seed(0)
    started, done = threading.Event(), threading.Event()
    seen: list[type] = []

    class Slow(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            started.set()
            done.wait(5)  # keep the trace (and its patches) open while the other thread runs
            return x

    class Traced(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.slow, self.conv, self.fc = Slow(), nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(self.slow(x)).mean((2, 3)))

    plain = nn.Sequential(nn.Conv2d(3, 3, 1))
    plain[0].register_forward_hook(lambda module, args, out: seen.append(type(out)))

    def other() -> None:
        started.wait(5)
        plain(torch.randn(1, 3, 4, 4))
        done.set()

    thread = threading.Thread(target=other)
    thread.start()
    pyramid = fxcfp.analyze(Traced(), torch.randn(3, 6, 6))
    thread.join()
    assert seen == [torch.Tensor]  # a real tensor, never a torch.fx.Proxy
    assert pyramid.layers[0].name == "fc"


@pytest.mark.parametrize("hook", ["pre", "forward"])
def test_failed_calls_under_threads_leave_torch_intact(hook):
    torch.manual_seed(0)
    model, shape = make_resnet3d()
    handle = (model.layer1.register_forward_pre_hook(lambda *a: None) if hook == "pre"
              else model.layer1.register_forward_hook(lambda *a: None))
    snap = snapshot(model)

    def job() -> str:
        with pytest.raises(fxcfp.UnsupportedModelError, match="layer1"):
            fxcfp.analyze(model, torch.randn(shape)[0])
        return "refused"

    assert _in_threads([job] * 4) == ["refused"] * 4
    assert_unchanged(model, snap)
    handle.remove()
    _torch_intact()
