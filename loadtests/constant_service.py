"""The baseline for loadtests/bench_gateway.py: a plain Nameko HTTP handler returning a constant.

`nameko run --config config.yml loadtests.constant_service` with WEB_SERVER_ADDRESS set.
"""
from nameko.web.handlers import http


class ConstantService:
    name = "constant"

    @http("GET", "/constant")
    def constant(self, request):
        return 200, {"Content-Type": "application/json"}, '{"status": "ok"}'
