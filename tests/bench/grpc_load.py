"""The gRPC-direct baseline: the calls the gateway would make, made straight on the services.

`run_grpc_load(...)` runs `python -m tests.bench.grpc_load` as a separate process (a load
generator in the servers' process would share their event loop). The child keeps `concurrency`
tasks each calling in a loop over one grpc.aio channel per service, with requests and responses
left as bytes (no protobuf work on the client side), after a warm-up, and prints one JSON line.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
from dataclasses import asdict

import grpc

from tests.bench.config import BenchError
from tests.bench.scenarios import GrpcStep
from tests.bench.wrk import LoadResult

CALL_TIMEOUT_S = 10.0


def run_grpc_load(
    targets: dict[str, str],
    steps: list[GrpcStep],
    *,
    duration_s: int,
    warmup_s: int,
    concurrency: int,
) -> LoadResult:
    plan = {
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "concurrency": concurrency,
        "steps": [
            {
                "target": targets[step.service],
                "method": step.method,
                "token": step.token,
                "requests": [base64.b64encode(request).decode() for request in step.requests],
            }
            for step in steps
        ],
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.grpc_load"],
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"gRPC load generator failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return LoadResult(**json.loads(done.stdout.strip().splitlines()[-1]))


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


async def drive(plan: dict) -> LoadResult:
    channels: dict[str, grpc.aio.Channel] = {}
    calls = []
    for step in plan["steps"]:
        channel = channels.get(step["target"])
        if channel is None:
            channel = channels[step["target"]] = grpc.aio.insecure_channel(step["target"])
        metadata = (("authorization", f"Bearer {step['token']}"),) if step["token"] else ()
        requests = [base64.b64decode(request) for request in step["requests"]]
        # No serializers: bytes go out and come back as they are.
        calls.append((channel.unary_unary(step["method"]), requests, metadata))

    latencies: list[float] = []
    errors = 0
    completed = 0
    measuring = False
    stop = False
    sequence = 0

    async def worker() -> None:
        nonlocal errors, completed, sequence
        while not stop:
            index = sequence
            sequence += 1
            started = time.perf_counter()
            failed = False
            for call, requests, metadata in calls:
                try:
                    await call(
                        requests[index % len(requests)], metadata=metadata, timeout=CALL_TIMEOUT_S
                    )
                except grpc.RpcError:
                    failed = True
                    break
            if measuring:
                completed += 1
                errors += failed
                latencies.append(time.perf_counter() - started)

    for channel in channels.values():
        await channel.channel_ready()
    tasks = [asyncio.create_task(worker()) for _ in range(plan["concurrency"])]
    await asyncio.sleep(plan["warmup_s"])
    measuring = True
    began = time.perf_counter()
    await asyncio.sleep(plan["duration_s"])
    measuring = False
    elapsed = time.perf_counter() - began
    stop = True
    await asyncio.gather(*tasks)
    for channel in channels.values():
        await channel.close()
    latencies.sort()
    return LoadResult(
        requests=completed,
        duration_s=elapsed,
        non_2xx=errors,
        socket_errors=0,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
    )


def main() -> None:
    plan = json.loads(sys.stdin.read())
    result = asyncio.run(drive(plan))
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
