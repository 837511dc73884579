"""``evolve``: a frozen dataclass copied with some fields changed, equal to ``dataclasses.replace``'s."""

import dataclasses

import pytest
from hypothesis import given, strategies as st

from infermon.model.frozen import evolve
from infermon.probes.snapshot import EngineSample, Histogram


@given(running=st.one_of(st.none(), st.floats(allow_nan=False)), source_time=st.one_of(st.none(), st.floats(0, 1e9)),
       why=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3))
def test_evolve_equals_replace_and_leaves_the_original(running, source_time, why):
    original = EngineSample(kind="vllm", url="http://127.0.0.1:8000/metrics", requests_running=3.0,
                            ttft=Histogram(buckets=((0.1, 1.0), (float("inf"), 2.0)), sum=0.3, count=2.0))
    before = dataclasses.asdict(original)
    changes = {"requests_running": running, "source_time": source_time, "why": why}
    copied = evolve(original, **changes)
    assert copied == dataclasses.replace(original, **changes)
    assert type(copied) is EngineSample and copied is not original
    assert dataclasses.asdict(original) == before
    with pytest.raises(dataclasses.FrozenInstanceError):
        copied.requests_running = 1.0  # type: ignore[misc]


def test_evolve_refuses_what_replace_refuses():
    sample = EngineSample(kind="vllm", url="u")
    with pytest.raises(TypeError):
        evolve(sample, no_such_field=1)
    with pytest.raises(TypeError):
        evolve(object())


def test_evolve_runs_post_init_and_respects_init_false_and_slots():
    @dataclasses.dataclass(frozen=True)
    class Checked:
        value: float

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("negative")

    @dataclasses.dataclass(frozen=True)
    class Derived:
        value: float
        double: float = dataclasses.field(init=False, default=0.0)

    @dataclasses.dataclass(frozen=True, slots=True)
    class Slotted:
        value: float

    with pytest.raises(ValueError):
        evolve(Checked(1.0), value=-1.0)  # __post_init__ ran, as replace would run it
    with pytest.raises(ValueError):
        evolve(Derived(1.0), double=2.0)  # replace's refusal of an init=False field
    assert evolve(Slotted(1.0), value=2.0) == Slotted(2.0)


def test_evolve_runs_an_init_of_the_class_own_and_sees_a_parents_slots():
    calls = []

    @dataclasses.dataclass(frozen=True, init=False)
    class OwnInit:
        value: float

        def __init__(self, value: float) -> None:
            calls.append(value)
            object.__setattr__(self, "value", value)

    @dataclasses.dataclass(frozen=True, slots=True)
    class Base:
        value: float

    @dataclasses.dataclass(frozen=True)
    class Child(Base):
        other: float = 0.0

    assert evolve(OwnInit(1.0), value=2.0).value == 2.0 and calls == [1.0, 2.0]
    child = evolve(Child(1.0, 2.0), value=3.0)
    assert (child.value, child.other) == (3.0, 2.0) and child == Child(3.0, 2.0)


def test_the_quick_path_is_taken_for_the_projects_hot_classes():
    from infermon.model.frozen import _plain_fields
    from infermon.model.levers import Lever, Levers
    from infermon.probes.snapshot import AgentSample

    for cls in (EngineSample, AgentSample, Lever, Levers):
        assert _plain_fields(cls) == frozenset(field.name for field in dataclasses.fields(cls)), cls
