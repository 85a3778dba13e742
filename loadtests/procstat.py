"""What a process has used so far, for the benchmarks: CPU time from /proc (Linux), and
the database commands it sent, counted inside it by query_counter/ (a pymongo
CommandListener that Python loads as ``sitecustomize`` from PYTHONPATH)."""
import os
from collections import Counter
from pathlib import Path

COUNTER = Path(__file__).with_name("query_counter")


def cpu_seconds(pid):
    """User + system CPU seconds of a process so far; 0 for one that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counting_env(directory):
    """The environment under which a process started now counts its database commands
    into ``directory`` (one ``<pid>.log`` each)."""
    path = os.pathsep.join(filter(None, [str(COUNTER), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "QUERY_COUNT_DIR": str(directory)}


def commands_sent(directory, started, ended):
    """{pid: Counter of (command, "database.collection")} sent from ``started`` until
    ``ended`` (unix times), per process that counted into ``directory``."""
    sent = {}
    for log in Path(directory).glob("*.log"):
        seen = Counter()
        for line in log.read_text().splitlines():
            at, command, *target = line.split()
            if started <= float(at) < ended:
                seen[command, target[0] if target else "-"] += 1
        sent[int(log.stem)] = seen
    return sent
