"""python -m tests.bench.log_micro 2>/dev/null: what one access line costs (libs/logging.py at
INFO, JSON): the caller's wall µs and the process's CPU µs (every thread, the writer's too) per
line, over 30,000 lines of the gRPC server's `rpc` shape (docs/benchmarks.md "Logging at INFO")."""

from __future__ import annotations

import sys
import time

from libs import call_context
from libs import logging as cp_logging

LINES = 30_000


def main() -> None:
    cp_logging.configure_logging("catalog", "INFO", True)
    log = cp_logging.get_logger("grpc")
    call_context.request_id.set("abcdef0123456789abcdef01")

    def line() -> None:
        log.info(
            "rpc",
            method="/courseplatform.catalog.v1.CatalogService/GetCourse",
            grpc_status="OK",
            duration_ms=1.23,
            user_id=42,
        )

    for _ in range(2000):
        line()
    time.sleep(0.5)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(LINES):
        line()
    wall = time.perf_counter() - wall
    for writer in list(cp_logging._writers.values()):
        writer.close()  # everything queued written out, inside the measurement
    cpu = time.process_time() - cpu
    print(
        f"caller {wall / LINES * 1e6:.1f} µs/line, process CPU {cpu / LINES * 1e6:.1f} µs/line",
        file=sys.__stdout__,
    )


if __name__ == "__main__":
    main()
