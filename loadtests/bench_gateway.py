"""GET /users/me through the gateway, next to a plain Nameko HTTP handler, in one run.

Needs a running system (`invoke run`). Starts the constant baseline service itself,
then alternates the two targets for --rounds rounds so machine noise hits both, and
prints per-round figures, medians and the ratio.

    python -m loadtests.bench_gateway --base-url http://127.0.0.1:8000 --seconds 10
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

from loadtests.httpload import median_of, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def post_json(url, body):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def access_token(base_url):
    name = f"bench_{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    post_json(f"{base_url}/users", {"username": name, "email": f"{name}@example.org",
                                    "password": password})
    return post_json(f"{base_url}/auth/token", {"username": name, "password": password})[
        "access_token"
    ]


def start_constant_service():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, WEB_SERVER_ADDRESS=f"127.0.0.1:{port}")
    process = subprocess.Popen(
        [sys.executable, "-m", "nameko", "run", "--config", "config.yml",
         "loadtests.constant_service"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/constant"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the constant baseline service did not start")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=os.environ.get("EVENTPOST_URL",
                                                            "http://127.0.0.1:8000"))
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", help="also write the figures to this JSON file")
    args = parser.parse_args()

    token = access_token(args.base_url)
    baseline, baseline_url = start_constant_service()
    targets = {
        "gateway GET /users/me": (f"{args.base_url}/users/me",
                                  {"Authorization": f"Bearer {token}"}),
        "plain nameko handler (constant)": (baseline_url, {}),
    }
    results = {name: [] for name in targets}
    try:
        for round_number in range(1, args.rounds + 1):
            for name, (url, headers) in targets.items():
                print(f"round {round_number}/{args.rounds}: {name} for {args.seconds:g}s "
                      f"at concurrency {args.concurrency}", file=sys.stderr, flush=True)
                figures = run(url, args.seconds, args.concurrency, headers)
                results[name].append(figures)
                print(f"  {figures}", file=sys.stderr, flush=True)
    finally:
        baseline.terminate()
        try:
            baseline.wait(10)
        except subprocess.TimeoutExpired:  # an HTTP-only nameko service can sleep through SIGTERM
            baseline.kill()
            baseline.wait()

    summary = {
        name: {"median_requests_per_s": median_of(rounds, "requests_per_s"),
               "median_p50_ms": median_of(rounds, "p50_ms"),
               "median_p99_ms": median_of(rounds, "p99_ms"),
               "errors": sum(r["errors"] for r in rounds), "rounds": rounds}
        for name, rounds in results.items()
    }
    gateway, plain = (summary[name] for name in targets)
    summary["gateway_to_plain_throughput_ratio"] = round(
        gateway["median_requests_per_s"] / plain["median_requests_per_s"], 3)
    print(json.dumps(summary, indent=2))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
