"""Container health check: does ``<service>.health()`` answer over RPC?

    python -m tools.healthcheck users

Exit 0 when the service answers "ok" within the timeout, 1 otherwise. Used by
docker-compose (services other than the gateway have no HTTP port to probe).
"""
import sys
import warnings

warnings.filterwarnings("ignore", message=r"\s*(Eventlet is deprecated|pkg_resources)")


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tools.healthcheck <service>", file=sys.stderr)
        return 2
    from nameko.standalone.rpc import ClusterRpcProxy

    import bus.config

    try:
        with ClusterRpcProxy(bus.config.load(), timeout=5) as rpc:
            answer = getattr(rpc, args[0]).health()
    except Exception as exc:
        print(f"{args[0]}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"{args[0]}: {answer}")
    return 0 if answer == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
