"""Start and stop a SecantusDB server as its own process, on a free loopback port."""
import socket
import subprocess
import sys
import time

from pymongo import MongoClient


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SecantusProcess:
    def __init__(self, storage_path, port=None, log_path=None):
        self.storage_path = str(storage_path)
        self.port = port or free_port()
        self.log_path = log_path
        self.process = None

    @property
    def uri(self):
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self, timeout=30):
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "secantus", "--port", str(self.port),
             "--storage-path", self.storage_path],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"SecantusDB exited with {self.process.returncode}")
            try:
                MongoClient(self.uri, serverSelectionTimeoutMS=500).admin.command("ping")
                return self
            except Exception:
                time.sleep(0.2)
        raise RuntimeError(f"SecantusDB did not answer on {self.uri} within {timeout}s")

    def stop(self, timeout=10):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
