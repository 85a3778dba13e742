"""Reminders through faults, with real parts on one machine (DESIGN.md, "Faults"):
a burst of reminders due in the same second on the whole system as `invoke run`
starts it (loadtests/reminders.py's Stack), and during it one fault:

- a private RabbitMQ node (never the shared one on 5672) killed with SIGKILL and
  started again on its data, or ``stop_app`` / ``start_app``;
- SIGKILL of every notifications and mailer process (two of each), then a restart;
- SecantusDB killed with SIGKILL and started again on the same data;
- the SMTP server down for 60 s, then back;
- SMTP replies 451 and 421 to DATA, 550 to one user's address.

What a user would check: every reminder's email arrives exactly once (a 550
recipient's reminder is ``failed`` with the server's reason instead), no reminder
stays in flight, and the services recover by themselves: after a broker or
database restart nothing else is restarted. A mail cut off by a kill inside the
SMTP DATA exchange may end ``failed`` (``interrupted``) rather than risk a
duplicate: those are counted apart and must be rare. Figures for bursts of 1,000:
``python -m loadtests.reminders --faults all`` (README, Figures).
"""
import sys

import pytest

from loadtests.reminders import FAULTS, fault_run
from tests.support import rabbit_node

# minutes each on a loaded machine (starting a private broker node alone can take 4)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
BURST = 400
RARE = BURST * 0.02  # interrupted mails allowed where a kill or a server cuts one off


def run(name, tmp_path):
    # early in the burst, so that much of it is still to come when the fault lifts
    result = fault_run(name, tmp_path, count=BURST, inject_after=0.3,
                       echo=lambda line: print(line, file=sys.__stderr__, flush=True))
    print(f"\n{name}: {result}", file=sys.__stderr__, flush=True)
    return result


def assert_exactly_once(result, refused=0):
    assert result["duplicated"] == 0, result
    assert result["lost"] == 0, result
    assert result["not_final"] == 0, result  # nothing stays "sending"
    assert result["refused"] == refused, result
    assert result["delivered"] + result["interrupted"] + result["refused"] >= BURST, result


broker = pytest.mark.skipif(not rabbit_node.available(),
                            reason="a private RabbitMQ node needs root and rabbitmq-server")


@broker
@pytest.mark.parametrize("fault", ["broker-kill", "broker-stop-app"])
def test_a_broker_restart_mid_burst_loses_and_repeats_nothing(tmp_path, fault):
    result = run(fault, tmp_path)
    assert_exactly_once(result)
    assert result["interrupted"] == 0, result  # no process died
    assert result["before_fault"] < BURST, "the burst was over before the fault"
    # every outcome came back through the restarted broker: nothing is left "sending"
    # (assert_exactly_once), with no service restarted


def test_sigkill_of_every_notifications_and_mailer_process_mid_burst(tmp_path):
    result = run("services-kill", tmp_path)
    assert_exactly_once(result)
    assert 0 < result["before_fault"] < BURST, "the kill did not come mid-burst"
    assert result["interrupted"] <= RARE, result


def test_a_database_restart_mid_burst_loses_and_repeats_nothing(tmp_path):
    result = run("database-kill", tmp_path)
    assert_exactly_once(result)
    assert result["interrupted"] == 0, result


def test_an_smtp_server_down_for_a_minute_delivers_everything_when_back(tmp_path):
    result = run("smtp-down", tmp_path)
    assert_exactly_once(result)
    # the server went away in the middle of some DATA exchanges
    assert result["interrupted"] <= RARE, result
    assert result["resumed_after"] is not None and result["resumed_after"] < 30, result


def test_smtp_replies_421_451_and_550(tmp_path):
    result = run("smtp-replies", tmp_path)
    # one user in 20 has the refused address: 20 of 400 reminders
    assert_exactly_once(result, refused=BURST // 20)
    assert result["statuses"] == {"sent": BURST - BURST // 20, "failed": BURST // 20}, result
    scripted = FAULTS["smtp-replies"]["script"]["data_replies"]
    assert result["refusals"]["451"] == scripted.count("451 4.3.0 try again later")
    assert result["refusals"]["421"] == scripted.count("421 4.3.2 closing, try later")
