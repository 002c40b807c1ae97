"""The usage examples of QtForge's PluginOrchestrator Python documents, run
on both backends over examples/data/seattle-weather.csv (1,461 days).

Adapted to the example plugins: plugin ids and method names (``csv_loader``
→ ``plexus.csv``, ``data_validator`` → ``plexus.validator``…), the
parameters those plugins take (data passes between steps with
``${{ steps.<id>.output… }}``), and polling intervals of 50 ms instead of
1 s. The structure, the calls and the checks are the documents'.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import time

import plexus
from plexus import orchestration as qo

ROWS = 1461
WEATHER = {"drizzle", "rain", "sun", "snow", "fog"}
SCHEMA = {
    "date": {"type": "string", "pattern_len": 10},
    "precipitation": {"type": "number", "min": 0},
    "temp_max": {"type": "number", "min": -40, "max": 50},
    "temp_min": {"type": "number", "min": -40, "max": 50},
    "wind": {"type": "number", "min": 0},
    "weather": {"type": "string", "allowed": sorted(WEATHER)},
}
COLUMNS = ["precipitation", "temp_max", "temp_min", "wind"]


# ----- "Basic Workflow Creation and Execution": the CSV pipeline -----


def create_data_processing_workflow(orchestrator, workflow_id, data_csv):
    workflow = qo.Workflow(workflow_id, "Data Processing Pipeline")
    workflow.set_description("Process CSV data through multiple stages")
    workflow.set_execution_mode(qo.ExecutionMode.Sequential)
    # Plexus: the output file is an input of the workflow.
    workflow.inputs = {"output_path": {"type": "string", "required": True}}

    load_step = qo.WorkflowStep("load", "plexus.csv", "load")
    load_step.parameters = {"path": str(data_csv)}

    validate_step = qo.WorkflowStep("validate", "plexus.validator", "validate")
    validate_step.dependencies = ["load"]
    validate_step.parameters = {"rows": "${{ steps.load.output.rows }}", "schema": SCHEMA}

    transform_step = qo.WorkflowStep("transform", "plexus.transformer", "normalize")
    transform_step.dependencies = ["validate"]
    transform_step.parameters = {"rows": "${{ steps.validate.output.rows }}", "columns": COLUMNS, "method": "min-max"}

    save_step = qo.WorkflowStep("save", "plexus.csv", "save")
    save_step.dependencies = ["transform"]
    save_step.parameters = {
        "path": "${{ inputs.output_path }}",
        "rows": "${{ steps.transform.output.rows }}",
        "columns": ["date", *COLUMNS, "weather"],
    }

    workflow.add_step(load_step)
    workflow.add_step(validate_step)
    workflow.add_step(transform_step)
    workflow.add_step(save_step)

    result = orchestrator.register_workflow(workflow)
    if result:
        print("Workflow registered successfully")
        return orchestrator
    print(f"Failed to register workflow: {result.error().message}")
    return None


def execute_workflow(orchestrator, workflow_id, output_path):
    execution_result = orchestrator.execute_workflow(workflow_id, {"output_path": str(output_path)})
    if not execution_result:
        print(f"Failed to start workflow: {execution_result.error().message}")
        return None

    execution_id = execution_result.value()
    print(f"Workflow execution started: {execution_id}")

    while True:
        status_result = orchestrator.get_workflow_status(execution_id)
        if status_result:
            status = status_result.value()
            print(f"Progress: {status.get('progress', 0) * 100:.0f}% - {status.get('current_step', 'Unknown')}")
            if status.get("status") == "completed":
                print("Workflow completed successfully!")
                results_result = orchestrator.get_workflow_results(execution_id)
                if results_result:
                    return execution_id, results_result.value()
                return execution_id, None
            if status.get("status") == "failed":
                print("Workflow execution failed!")
                return None
        time.sleep(0.05)


def test_csv_data_processing_pipeline(orchestrator, data_csv, workdir, unique):
    workflow_id = f"data_processing_{unique}"
    assert create_data_processing_workflow(orchestrator, workflow_id, data_csv) is orchestrator
    output = workdir / "output.csv"
    execution_id, results = execute_workflow(orchestrator, workflow_id, output)
    assert results is not None and results["status"] == "completed"
    assert results["steps"]["load"]["row_count"] == ROWS
    assert results["steps"]["validate"]["invalid_rows"] == 0
    assert results["steps"]["save"]["row_count"] == ROWS

    with output.open() as f:
        rows = list(csv.DictReader(f))
    with data_csv.open() as f:
        source = list(csv.DictReader(f))
    assert len(rows) == ROWS
    for column in COLUMNS:
        values = [float(r[column]) for r in rows]
        assert min(values) == 0.0 and max(values) == 1.0, column
        # Min-max of the real data: the first day's value, recomputed here.
        raw = [float(r[column]) for r in source]
        expected = (raw[0] - min(raw)) / (max(raw) - min(raw))
        assert abs(values[0] - expected) < 1e-9, column
    assert rows[0]["date"] == source[0]["date"] and rows[0]["weather"] == source[0]["weather"]

    steps = orchestrator.get_step_results(execution_id).value()
    assert [s["step_id"] for s in steps] == ["load", "validate", "transform", "save"]
    assert all(s["status"] is qo.StepStatus.Completed for s in steps)


# ----- "Parallel Workflow Execution": independent steps and an aggregate -----


def create_parallel_workflow(orchestrator, workflow_id, rows):
    workflow = qo.Workflow(workflow_id, "Parallel Processing")
    workflow.set_execution_mode(qo.ExecutionMode.Parallel)

    # Independent parallel steps (the rows come in the initial data's context).
    process_temperature = qo.WorkflowStep("temperature", "plexus.transformer", "summarize")
    process_temperature.parameters = {"rows": "${{ context.rows }}", "column": "temp_max", "group_by": "weather"}

    process_precipitation = qo.WorkflowStep("precipitation", "plexus.transformer", "summarize")
    process_precipitation.parameters = {"rows": "${{ context.rows }}", "column": "precipitation", "group_by": "weather"}

    process_wind = qo.WorkflowStep("windy_days", "plexus.transformer", "filter")
    process_wind.parameters = {"rows": "${{ context.rows }}", "column": "wind", "op": "ge", "value": 6}

    # Final aggregation step (depends on all parallel steps)
    aggregate = qo.WorkflowStep("aggregate", "plexus.transformer", "merge")
    aggregate.dependencies = ["temperature", "precipitation", "windy_days"]
    aggregate.parameters = {
        "parts": {
            "temp_max_by_weather": "${{ steps.temperature.output.groups }}",
            "precipitation_by_weather": "${{ steps.precipitation.output.groups }}",
            "windy_days": "${{ steps.windy_days.output.kept }}",
        }
    }

    workflow.add_step(process_temperature)
    workflow.add_step(process_precipitation)
    workflow.add_step(process_wind)
    workflow.add_step(aggregate)

    orchestrator.register_workflow(workflow)
    return orchestrator.execute_workflow(workflow_id, {"rows": rows})


def test_parallel_workflow_with_an_aggregate(orchestrator, data_csv, unique):
    loaded = orchestrator.call("plexus.csv", "load", {"path": str(data_csv)})
    assert loaded, loaded.error()
    rows = loaded.value()["rows"]
    assert len(rows) == ROWS

    result = create_parallel_workflow(orchestrator, f"parallel_processing_{unique}", rows)
    assert result, result.error()
    print(f"Parallel workflow started: {result.value()}")
    execution_id = result.value()
    status = orchestrator.get_workflow_status(execution_id).value()
    assert status["status"] == "completed", status.get("error")
    assert status["total_steps"] == status["completed_steps"] == 4

    report = orchestrator.get_workflow_results(execution_id).value()["steps"]["aggregate"]
    # The same summaries, asked of the plugin directly.
    direct = orchestrator.call(
        "plexus.transformer", "summarize", {"rows": rows, "column": "temp_max", "group_by": "weather"}
    ).value()
    assert report["temp_max_by_weather"] == direct["groups"]
    assert set(report["temp_max_by_weather"]) == WEATHER
    windy = sum(1 for r in rows if float(r["wind"]) >= 6)
    assert report["windy_days"] == windy and 0 < windy < ROWS

    # The aggregate waited for every branch (that branches run at once is
    # test_api.py's test_parallel_branches_run_at_once).
    steps = {s["id"]: s for s in status["steps"]}
    branches = [steps[b] for b in ("temperature", "precipitation", "windy_days")]
    assert steps["aggregate"]["started_at_ms"] >= max(s["ended_at_ms"] for s in branches)


# ----- "Error Handling and Retry Logic": retries and a non-critical fallback -----


def create_robust_workflow(orchestrator, workflow_id, cache_path):
    workflow = qo.Workflow(workflow_id, "Robust Processing")

    # Step with retry logic: fails twice, then succeeds
    unreliable_step = qo.WorkflowStep("fetch_data", "plexus.echo.native", "flaky")
    unreliable_step.parameters = {"failures": 2}
    unreliable_step.max_retries = 3
    unreliable_step.timeout = 30000  # 30 seconds
    unreliable_step.critical = True

    # Fallback step (non-critical): reads the cached copy of the data
    fallback_step = qo.WorkflowStep("fallback", "plexus.csv", "load")
    fallback_step.parameters = {"path": str(cache_path)}
    fallback_step.dependencies = ["fetch_data"]
    fallback_step.critical = False  # Won't fail entire workflow

    workflow.add_step(unreliable_step)
    workflow.add_step(fallback_step)

    orchestrator.register_workflow(workflow)

    try:
        result = orchestrator.execute_workflow(workflow_id)
        if result:
            execution_id = result.value()
            print(f"Robust workflow started: {execution_id}")
            return execution_id
        print(f"Failed to start workflow: {result.error().message}")
    except plexus.PluginError as e:
        print(f"Plugin error: {e}")
    return None


def test_robust_workflow_retries_and_a_fallback(orchestrator, data_csv, unique):
    execution_id = create_robust_workflow(orchestrator, f"robust_processing_{unique}", data_csv)
    assert execution_id is not None
    status = orchestrator.get_workflow_status(execution_id).value()
    assert status["status"] == "completed", status.get("error")
    steps = {s["step_id"]: s for s in orchestrator.get_step_results(execution_id).value()}
    # QtForge's max_retries: 3 retries allowed; two were needed.
    assert steps["fetch_data"]["retry_count"] == 2
    assert steps["fetch_data"]["result_data"] == {"attempt": 3}
    assert steps["fallback"]["status"] is qo.StepStatus.Completed
    assert steps["fallback"]["result_data"]["row_count"] == ROWS


def test_robust_workflow_survives_its_fallback_failing(orchestrator, tmp_path, unique):
    execution_id = create_robust_workflow(orchestrator, f"robust_missing_{unique}", tmp_path / "no-cache.csv")
    assert execution_id is not None
    status = orchestrator.get_workflow_status(execution_id).value()
    # Non-critical: its failure is recorded, the workflow completes.
    assert status["status"] == "completed", status.get("error")
    steps = {s["step_id"]: s for s in orchestrator.get_step_results(execution_id).value()}
    assert steps["fallback"]["status"] is qo.StepStatus.Failed
    assert "no-cache.csv" in steps["fallback"]["error_message"]


# ----- "Workflow Status Monitoring": asyncio and a thread pool -----


async def monitor_workflow_async(orchestrator, execution_id, seen):
    """Asynchronously monitor workflow execution."""
    while True:
        status_result = orchestrator.get_workflow_status(execution_id)
        if status_result:
            status = status_result.value()
            seen.append(status)
            print(f"Workflow {execution_id}:")
            print(f"  Status: {status.get('status', 'unknown')}")
            print(f"  Progress: {status.get('progress', 0):.1%}")
            print(f"  Current Step: {status.get('current_step', 'none')}")
            print(f"  Completed Steps: {status.get('completed_steps', 0)}/{status.get('total_steps', 0)}")
            if status.get("status") in ["completed", "failed", "cancelled"]:
                break
        await asyncio.sleep(0.05)


def monitor_multiple_workflows(orchestrator, execution_ids):
    """Monitor multiple workflow executions."""

    def monitor_single(execution_id):
        while True:
            status_result = orchestrator.get_workflow_status(execution_id)
            if status_result:
                status = status_result.value()
                if status.get("status") in ["completed", "failed", "cancelled"]:
                    return execution_id, status.get("status")
            time.sleep(0.05)

    finished = {}
    with concurrent.futures.ThreadPoolExecutor() as executor:
        futures = {executor.submit(monitor_single, eid): eid for eid in execution_ids}
        for future in concurrent.futures.as_completed(futures):
            execution_id, final_status = future.result()
            print(f"Workflow {execution_id} finished with status: {final_status}")
            finished[execution_id] = final_status
    return finished


def _slow_workflow(orchestrator, workflow_id):
    """Three steps of 150 ms each (echo's sleep), so there is something to watch."""
    workflow = qo.Workflow(workflow_id, "Slow")
    previous = None
    for name in ("first", "second", "third"):
        step = qo.WorkflowStep(name, "plexus.echo.native", "sleep")
        step.parameters = {"ms": 150}
        if previous:
            step.dependencies = [previous]
        workflow.add_step(step)
        previous = name
    assert orchestrator.register_workflow(workflow)


def test_status_monitoring_with_asyncio(orchestrator, unique):
    workflow_id = f"monitored_{unique}"
    _slow_workflow(orchestrator, workflow_id)
    execution_id = orchestrator.execute_workflow(workflow_id, async_execution=True).value()
    seen = []
    asyncio.run(monitor_workflow_async(orchestrator, execution_id, seen))
    assert seen[-1]["status"] == "completed"
    assert seen[-1]["completed_steps"] == seen[-1]["total_steps"] == 3
    progress = [s["progress"] for s in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    # It was watched while it ran, not only at its end.
    assert any(s["status"] == "running" and s["current_step"] in ("first", "second", "third") for s in seen)


def test_status_monitoring_with_a_thread_pool(orchestrator, unique):
    workflow_id = f"monitored_pool_{unique}"
    _slow_workflow(orchestrator, workflow_id)
    started = time.monotonic()
    execution_ids = [orchestrator.execute_workflow(workflow_id, async_execution=True).value() for _ in range(4)]
    finished = monitor_multiple_workflows(orchestrator, execution_ids)
    assert finished == {eid: "completed" for eid in execution_ids}
    # Four executions of 450 ms each ran side by side, not one after another.
    assert time.monotonic() - started < 4 * 0.45
