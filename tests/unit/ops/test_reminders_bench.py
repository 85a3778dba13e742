"""loadtests/reminders.py's arithmetic: the steady rate and the medians of rounds."""
from loadtests.reminders import HEADER, format_row, medians, steady_rate


def test_the_steady_rate_leaves_out_the_start_and_the_tail():
    # 100 arrivals: a slow start (10 in 10 s), 80 at 40/s, a slow tail
    arrivals = [float(i) for i in range(10)] + [10 + i / 40 for i in range(80)] \
        + [12 + i for i in range(10)]
    assert steady_rate(arrivals) == 80 / (arrivals[90] - arrivals[10])
    assert 35 < steady_rate(arrivals) < 45


def test_too_few_arrivals_have_no_steady_rate():
    assert steady_rate([1.0, 2.0]) is None
    assert steady_rate([5.0] * 30) is None  # all at once: no span to divide by


def round_(p99, duplicated=0, load=(1.0, 2.0)):
    return {"reminders": 10, "delivered": 10 - duplicated, "duplicated": duplicated, "lost": 0,
            "interrupted": 0, "not_final": 0, "p50": p99 / 2, "p99": p99, "max": p99,
            "per_s": 100 / p99, "steady_per_s": None, "db_ops_per_reminder": 1.0, "load": load}


def test_medians_take_each_figure_s_median_and_sum_the_counts():
    merged = medians([round_(3.0), round_(9.0, duplicated=1, load=(4.0, 6.0)), round_(4.0)])
    assert merged["p99"] == 4.0
    assert merged["p50"] == 2.0
    assert merged["duplicated"] == 1  # a duplicate in any round shows
    assert merged["reminders"] == 30
    assert merged["steady_per_s"] is None
    assert merged["load"] == (1.0, 6.0)


def test_a_row_has_a_cell_for_every_column():
    columns = HEADER.splitlines()[0].count("|")
    assert format_row("burst", round_(3.0)).count("|") == columns
    assert "1.0-2.0" in format_row("burst", round_(3.0))
