"""`invoke bench` in its quickest form, end to end: both systems start, every kind of run
(wrk routes, the locust mix with the lag probe, the many-clients runs, RSS) gives
figures, the table has both columns, and everything stops."""
import json
import re
import subprocess
import sys

import pytest

from tools.system import PROJECT_ROOT


@pytest.mark.slow  # starts two systems of its own
def test_the_quickest_bench_prints_the_table_with_both_columns(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.bench", "--quick", "--rounds", "1", "--sizes", "50",
         "--seconds", "1", "--mix-seconds", "2", "--burst-seconds", "1", "--out", str(out)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=110,
    )
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    figures = json.loads(out.read_text())
    assert not figures["failed"] and not figures["interrupted"]
    assert not [run for run in figures["runs"] if "error" in run], figures["runs"]
    assert {(run["target"], run["route"]) for run in figures["runs"]} == {
        ("EventPost", route) for route in ("by_id", "list", "search", "me", "mix")
    } | {("baseline", route) for route in ("by_id", "list", "mix")}

    header = "| figure | baseline (median) | EventPost (median) | ratio | target | met? |"
    assert header in result.stdout
    table = result.stdout.split(header, 1)[1].split("\n\n", 1)[0]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in table.splitlines()[2:]]
    assert len(rows) >= 14, table  # 11 per size, 2 many-clients runs, RSS
    for figure, baseline, eventpost, *_ in rows:
        assert eventpost not in ("—", "failed"), figure
        # the baseline has no projection to lag behind
        assert baseline not in ("—", "failed") or figure.startswith("projection lag"), figure
    by_id = next(row for row in rows if row[0].startswith("GET /events/{id}, req/s"))
    assert all(re.fullmatch(r"[\d,.]+", cell) for cell in by_id[1:3]), by_id
    assert figures["lag"]["50"]["samples"] > 0, figures["lag"]
    assert {p["system"] for p in figures["rss"]["50"]} == {"EventPost", "baseline"}
