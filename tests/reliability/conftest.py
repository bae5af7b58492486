"""The shared pipeline world of the reliability suite: two nights built, two models trained (A is
production), both nights scored, all by real job processes; ``world.baseline`` is its snapshot."""
import pytest

from _world import BUILD_WORLD, World, rcs


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    w = World.create(tmp_path_factory.mktemp("world"))
    result = w.plan(BUILD_WORLD, timeout=400)
    assert all(rc == 0 for rc in rcs(result)), (result["steps"], result["log"][-5000:])
    w.baseline = result["world"]
    return w
