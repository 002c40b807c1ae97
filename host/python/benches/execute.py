"""The Python API's overhead (README, "Python"): `execute_workflow` of a
5-step chain of native no-op steps, which returns when the execution ended,
through `import plexus`, per call. The Rust side is criterion's
`run_5_chain` (host/workflow/benches/workflow.rs): the same workflow, the same
plugins, executed and awaited through the orchestrator directly; the
difference is what Python adds.

    bash scripts/bench.sh -- run_5_chain       # both (release builds)

Prints one JSON line: {"bench": "python_run_5_chain", "median_us": …,
"min_us": …, "engine_median_us": …, …}: `median_us` through the public API
(`PluginOrchestrator.execute_workflow`), `engine_median_us` calling the
extension's engine directly in the same process (the Python layer's own
cost is the difference).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from plexus.orchestration import PluginOrchestrator

ROOT = Path(__file__).resolve().parents[3]
STEPS, WARMUP, ROUNDS, CALLS = 5, 2_000, 15, 2_000


def main() -> None:
    plugins = os.environ.get("PLEXUS_BENCH_PLUGINS", str(ROOT / "target" / "plugins"))
    with tempfile.TemporaryDirectory() as cache, PluginOrchestrator([plugins], cache_dir=cache) as o:
        # The very document of the Rust benchmark (benches/common: `chain`).
        o.register_workflow({
            "id": "run_5_chain",
            "execution_mode": "parallel",
            "steps": [
                {"id": f"s{i}", "plugin_id": "plexus.echo.native", "method_name": "noop",
                 "dependencies": [f"s{i - 1}"] if i else []}
                for i in range(STEPS)
            ],
        }).value()
        engine = o._engine

        def api() -> None:
            assert o.execute_workflow("run_5_chain")

        def direct() -> None:
            engine.wait(engine.execute("run_5_chain", None, None), None, False)

        per_call = {"api": [], "direct": []}
        for f in (api, direct):
            for _ in range(WARMUP):
                f()
        # Alternating rounds, so both see the same machine.
        for _ in range(ROUNDS):
            for name, f in (("api", api), ("direct", direct)):
                started = time.perf_counter_ns()
                for _ in range(CALLS):
                    f()
                per_call[name].append((time.perf_counter_ns() - started) / CALLS / 1000)
        last = o.get_workflow_status(o.execute_workflow("run_5_chain").value()).value()
        assert last["status"] == "completed" and last["completed_steps"] == STEPS, last
    print(json.dumps({
        "bench": "python_run_5_chain",
        "median_us": round(statistics.median(per_call["api"]), 2),
        "min_us": round(min(per_call["api"]), 2),
        "engine_median_us": round(statistics.median(per_call["direct"]), 2),
        "rounds": ROUNDS,
        "calls_per_round": CALLS,
        "python": sys.version.split()[0],
    }))


if __name__ == "__main__":
    main()
