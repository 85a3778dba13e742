"""What a process has used so far, read from /proc (Linux), for the benchmarks."""
import os
from pathlib import Path


def cpu_seconds(pid):
    """User + system CPU seconds of a process so far; 0 for one that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
