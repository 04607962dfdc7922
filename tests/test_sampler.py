"""The CLEVR / CoGenT scene sampler: rules, determinism, shards (pure Python, fast)."""
import math
import random

import pytest

from ig_llm.scene.camera import StageJitter, ground_directions
from ig_llm.scene.domain import load_domain
from ig_llm.training.data.sampler import (MARGIN, MIN_GAP, X_RANGE, sample_image, sample_scene,
                                          shard_indices)

DOMAIN = load_domain()
COGENT = {
    "A": {"cube": {"gray", "blue", "brown", "yellow"}, "cylinder": {"red", "green", "purple", "cyan"}},
    "B": {"cube": {"red", "green", "purple", "cyan"}, "cylinder": {"gray", "blue", "brown", "yellow"}},
}
ALL_COLORS = set(DOMAIN.values("color"))


def _samples(condition, n=300, seed=7):
    return [sample_image(seed, i, condition=condition) for i in range(n)]


@pytest.mark.parametrize("condition", ["A", "B", "none"])
def test_cogent_colour_rules(condition):
    seen = {s: set() for s in DOMAIN.values("shape")}
    for s in _samples(condition):
        for o in s.scene.objects:
            seen[o.shape].add(o.color)
    for shape, colors in seen.items():
        allowed = COGENT.get(condition, {}).get(shape, ALL_COLORS)
        assert colors == allowed, (condition, shape, colors)   # only allowed, and all of them


def test_gap_margin_ranges_and_fields():
    counts = set()
    for s in _samples("A", n=300, seed=3):
        objs = s.scene.objects
        counts.add(len(objs))
        dirs = ground_directions(s.jitter.camera_location())
        for i, a in enumerate(objs):
            r = DOMAIN.scale(a.size)
            assert X_RANGE[0] <= a.loc[0] <= X_RANGE[1] and X_RANGE[0] <= a.loc[1] <= X_RANGE[1]
            assert a.loc[2] == r
            assert 0.0 <= a.rotation < 2 * math.pi
            for b in objs[:i]:
                dx, dy = a.loc[0] - b.loc[0], a.loc[1] - b.loc[1]
                assert math.hypot(dx, dy) - r - DOMAIN.scale(b.size) >= MIN_GAP
                for name in ("left", "right", "front", "behind"):
                    d = dirs[name]
                    m = dx * d[0] + dy * d[1]
                    assert not (0 < m < MARGIN), (name, m)
    assert counts == set(range(3, 11))


def test_jitter_within_clevr_ranges():
    for s in _samples("none", n=100):
        assert all(abs(c) <= 0.5 for c in s.jitter.camera)
        assert all(abs(c) <= 1.0 for v in s.jitter.lamps.values() for c in v)


def test_same_seed_same_scenes_and_attempts_differ():
    a = [sample_image(11, i, condition="A") for i in range(20)]
    b = [sample_image(11, i, condition="A") for i in reversed(range(20))][::-1]
    assert [x.scene for x in a] == [x.scene for x in b]
    assert [x.jitter for x in a] == [x.jitter for x in b]
    other = [sample_image(12, i, condition="A") for i in range(20)]
    assert [x.scene for x in a] != [x.scene for x in other]
    # a resampled attempt keeps N and the camera (as CLEVR), but moves the objects
    r0, r1 = sample_image(11, 5, 0), sample_image(11, 5, 1)
    assert len(r0.scene) == len(r1.scene) and r0.jitter == r1.jitter and r0.scene != r1.scene
    # another split with the same seed never repeats the training scenes
    assert sample_image(11, 5, split="valA").scene != sample_image(11, 5, split="trainA").scene


def test_sample_scene_accepts_any_rng_and_camera():
    cam = StageJitter.sample(random.Random(1)).camera_location()
    s = sample_scene(random.Random(0), DOMAIN, "B", camera=cam, num_objects=10)
    assert len(s) == 10
    with pytest.raises(ValueError, match="condition"):
        sample_scene(random.Random(0), DOMAIN, "C")


@pytest.mark.parametrize("count,n", [(10, 1), (10, 3), (7, 4), (3, 5)])
def test_shards_disjoint_and_covering(count, n):
    parts = [list(shard_indices(count, i, n)) for i in range(n)]
    flat = [x for p in parts for x in p]
    assert sorted(flat) == list(range(count)) and len(flat) == len(set(flat))


def test_bad_shard():
    with pytest.raises(ValueError, match="0 <= i < n"):
        shard_indices(10, 3, 3)
