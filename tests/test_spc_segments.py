"""addin.spc's rules and limits over many segments at once equal the same rules segment by segment.

A summary charts every site in one call, each site a segment of its own; these checks hold the
one-pass versions to the plain per-segment results (limits to the last bit).
"""

from __future__ import annotations

import numpy as np
import pytest

from addin import spc


def random_segments(seed: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Concatenated values, segment ids, and the segments alone (counts, fractions and walks)."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, size in enumerate(rng.integers(1, 30, 60)):
        kind = i % 3
        if kind == 0:
            parts.append(rng.poisson(rng.uniform(0, 6), size).astype(float))
        elif kind == 1:
            parts.append(rng.random(size) * 7 / 3)
        else:
            parts.append(np.cumsum(rng.integers(-1, 2, size)).astype(float))
    values = np.concatenate(parts)
    segment = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
    return values, segment, parts


@pytest.mark.parametrize("seed", range(5))
def test_rules_with_segment_ids_equal_the_rules_per_segment(seed):
    values, segment, parts = random_segments(seed)
    mask, direction = spc.trend(values, segment=segment)
    assert mask.tolist() == [x for p in parts for x in spc.trend(p)[0].tolist()]
    assert direction.tolist() == [x for p in parts for x in spc.trend(p)[1].tolist()]
    lims = [spc.limits(p) for p in parts]
    per_point = {name: np.repeat([getattr(lim, name) for lim in lims], [len(p) for p in parts])
                 for name in spc.Limits._fields}
    shifted = spc.shift(values, per_point["mean"], segment=segment)
    assert shifted.tolist() == [x for p, lim in zip(parts, lims) for x in spc.shift(p, lim.mean).tolist()]
    close = spc.two_in_three(values, per_point["mean"], per_point["near_lpl"], per_point["near_upl"],
                             per_point["lpl"], per_point["upl"], segment=segment)
    assert close.tolist() == [x for p, lim in zip(parts, lims)
                              for x in spc.two_in_three(p, lim.mean, lim.near_lpl, lim.near_upl, lim.lpl,
                                                        lim.upl).tolist()]


@pytest.mark.parametrize("screen", [True, False])
def test_limits_of_many_segments_are_those_of_each_alone_to_the_bit(screen):
    values, _, parts = random_segments(7)
    starts = np.cumsum([0] + [len(p) for p in parts[:-1]])
    together = spc._segment_limits(values, starts, np.array([len(p) for p in parts]), screen)
    for i, part in enumerate(parts):
        alone = part.mean(), *(np.nan,) * 5
        if len(part) > 1:
            mr = np.abs(np.diff(part))
            bar = mr.mean()
            if screen and bar > 0:
                bar = mr[mr < spc.SCREEN_FACTOR * bar].mean()
            alone = (part.mean(), bar, part.mean() - spc.LIMIT * bar, part.mean() + spc.LIMIT * bar,
                     part.mean() - spc.NEAR_LIMIT * bar, part.mean() + spc.NEAR_LIMIT * bar)
        got = [float(column[i]) for column in together]
        assert np.array_equal(got, alone, equal_nan=True), (i, got, alone)


def test_one_chart_of_many_segments_is_the_charts_of_each():
    values, _, parts = random_segments(11)
    starts = np.cumsum([len(p) for p in parts[:-1]]).tolist()
    chart = spc.xmr(values, improvement="decrease", rebase_at=starts)
    alone = [spc.xmr(p, improvement="decrease") for p in parts]
    for column in ("mean", "upl", "near_lpl", "mr_bar"):
        assert np.array_equal(chart[column].to_numpy(), np.concatenate([a[column].to_numpy() for a in alone]),
                              equal_nan=True), column
    for column in ("point_type", "rule", "direction", "trial"):
        assert chart[column].tolist() == [x for a in alone for x in a[column].tolist()], column
