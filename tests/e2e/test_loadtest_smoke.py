"""The CI smoke load test: Taurus (locust executor) against the running system, failing on
any error (loadtests/smoke.yml's pass/fail criteria)."""
import json

import pytest


@pytest.mark.slow  # Taurus and locust start, seed and load for ~30 s
def test_the_smoke_load_test_passes_without_errors(system, tmp_path):
    system.invoke("seed", "--events", "60", timeout=120)
    summary_path = tmp_path / "smoke.json"
    result = system.invoke("loadtest", "--scenario", "smoke", "--url", system.base_url,
                           "--out", str(summary_path), check=False, timeout=300)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    summary = json.loads(summary_path.read_text())
    print(json.dumps(summary, indent=2))
    assert summary["total"]["requests"] > 0
    assert summary["total"]["errors"] == 0, summary["labels"]
    assert {"GET /events (search)", "POST /events"} <= set(summary["labels"])
