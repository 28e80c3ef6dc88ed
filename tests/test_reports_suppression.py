"""Small-number suppression: the NHS Digital rules and secondary suppression of totals."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from server.reports.suppression import (
    HIDDEN, NHS_DIGITAL_THRESHOLD, check_threshold, note, round5, suppress_table, suppress_value,
)


def with_totals(cells: list[list[int]]) -> pd.DataFrame:
    frame = pd.DataFrame(cells, index=[f"r{i}" for i in range(len(cells))],
                         columns=[f"c{j}" for j in range(len(cells[0]))])
    frame["Total"] = frame.sum(axis=1)
    frame.loc["Total"] = frame.sum()
    return frame


def test_zero_stays_zero_one_to_seven_hidden_eight_and_over_rounded():
    assert suppress_value(0) == 0
    assert [suppress_value(n) for n in range(1, 8)] == [HIDDEN] * 7
    assert [suppress_value(n) for n in (8, 9, 10, 11, 12, 13, 14, 17, 18, 100, 1234)] == \
        [10, 10, 10, 10, 10, 15, 15, 15, 20, 100, 1235]
    assert NHS_DIGITAL_THRESHOLD == 8


def test_suppress_below_n_hides_one_to_n_minus_one():
    assert [suppress_value(n, 5) for n in range(0, 9)] == [0, HIDDEN, HIDDEN, HIDDEN, HIDDEN, 5, 5, 5, 10]
    assert [suppress_value(n, 3) for n in range(0, 5)] == [0, HIDDEN, HIDDEN, 5, 5]  # never rounds to 0
    assert "counts of 1 to 4 are shown as *" in note(5)


@pytest.mark.parametrize("bad", [2, 1, 0, -5, 7.5, True, "8", None])
def test_threshold_must_be_three_or_more(bad):
    with pytest.raises(ValueError):
        check_threshold(bad)


@pytest.mark.parametrize("bad", [-1, 2.5, "x"])
def test_only_whole_counts(bad):
    with pytest.raises(ValueError):
        suppress_value(bad)


def test_round5_is_nearest_multiple_of_five():
    assert [round5(n) for n in (0, 2, 3, 7, 8, 12, 13, 22, 23)] == [0, 0, 5, 5, 10, 10, 15, 20, 25]


def test_one_hidden_cell_in_a_row_with_a_total_hides_the_next_smallest():
    # r0: 3 is hidden; total 3+20+40=63 would give it away, so 20 (next smallest non-zero) goes too.
    table = with_totals([[3, 20, 40], [30, 25, 50]])
    out = suppress_table(table)
    assert out.loc["r0"].tolist() == [HIDDEN, HIDDEN, 40, 65]
    # columns c0 and c1 now each had one hidden cell: r1's cells in them are hidden too
    assert out.loc["r1"].tolist() == [HIDDEN, HIDDEN, 50, 105]
    assert out.loc["Total"].tolist() == [35, 45, 90, 170]


def test_a_lone_non_zero_cell_takes_its_total_with_it():
    table = with_totals([[0, 5, 0], [20, 30, 40]])
    out = suppress_table(table)
    assert out.loc["r0", "c1"] == HIDDEN and out.loc["r0", "Total"] == HIDDEN
    assert out.loc["r0", "c0"] == 0 and out.loc["r0", "c2"] == 0  # zeros stay zeros
    # and in column c1 the hidden 5 was alone until 30 was hidden with it
    assert out.loc["r1", "c1"] == HIDDEN


def test_no_suppression_needed():
    table = with_totals([[0, 10, 20], [30, 0, 45]])
    out = suppress_table(table)
    assert out.to_numpy().tolist() == [[0, 10, 20, 30], [30, 0, 45, 75], [30, 10, 65, 105]]


def test_a_single_column_with_a_total_row():
    frame = pd.DataFrame({"n": [12, 3, 0, 40]}, index=["a", "b", "c", "d"])
    frame.loc["Total"] = frame["n"].sum()
    out = suppress_table(frame, row_total=None)
    assert out["n"].tolist() == [HIDDEN, HIDDEN, 0, 40, 55]  # 12 hidden with the 3, not the 40
    plain = suppress_table(frame.drop(index="Total"), row_total=None, col_total=None)
    assert plain["n"].tolist() == [10, HIDDEN, 0, 40]  # no total: nothing to work out, primary only


def lines(frame: pd.DataFrame) -> list[list[tuple]]:
    rows = [[(r, c) for c in frame.columns] for r in frame.index]
    cols = [[(r, c) for r in frame.index] for c in frame.columns]
    return rows + cols


@pytest.mark.parametrize("seed", range(40))
def test_random_tables_never_leave_a_hidden_cell_derivable(seed):
    rng = np.random.default_rng(seed)
    shape = (rng.integers(1, 7), rng.integers(1, 6))
    cells = rng.choice([0, 0, 1, 2, 3, 5, 7, 8, 9, 12, 20, 40], size=shape).tolist()
    threshold = int(rng.choice([3, 5, 8]))
    table = with_totals(cells)
    out = suppress_table(table, threshold)
    hidden = out == HIDDEN
    for line in lines(out):
        assert sum(hidden.at[cell] for cell in line) != 1
    for r, c in itertools.product(table.index, table.columns):
        true, shown = int(table.at[r, c]), out.at[r, c]
        if true == 0:
            assert shown == 0  # a zero is never hidden and never changed
        elif true < threshold:
            assert shown == HIDDEN
        else:
            assert shown in (HIDDEN, round5(true))
            assert shown == HIDDEN or shown > 0


def test_hidden_cells_cannot_be_recovered_by_subtraction_in_an_unrounded_copy():
    """Even with the shown totals exact, each hidden cell stays unknown: every line has two or more."""
    table = with_totals([[2, 9, 14, 0], [11, 1, 30, 6], [0, 0, 4, 0]])
    out = suppress_table(table, 8)
    hidden = out == HIDDEN
    for line in lines(out):
        n = sum(hidden.at[cell] for cell in line)
        assert n == 0 or n >= 2
    assert hidden.to_numpy().sum() >= 6
