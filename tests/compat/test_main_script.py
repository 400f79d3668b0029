"""Jobs defined where Chancy 0.26's quick start defines them: in the worker's own script.

``@job`` on a function in ``__main__`` or inside another function no longer fails at
decoration. A worker in the same program runs such jobs on every executor (process children
load the script as ``__mp_main__``, as multiprocessing does); a worker that cannot import the
function fails the job with a clear error when it runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chancy import Chancy, Queue, Worker, job

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys
    from chancy import Chancy, Queue, Worker, job

    @job(queue="q_async")
    async def hello_async(*, name: str) -> str:
        return f"async {name}"

    @job(queue="q_thread")
    def hello_thread(*, name: str) -> str:
        return f"thread {name}"

    @job(queue="q_process")
    def hello_process(*, name: str) -> str:
        return f"process {name} in {os.getpid() != PARENT}"

    PARENT = int(os.environ.get("PARENT_PID", "0"))

    async def main() -> None:
        os.environ["PARENT_PID"] = str(os.getpid())
        async with Chancy(sys.argv[1], prefix=sys.argv[2]) as chancy:
            await chancy.migrate()
            await chancy.declare(Queue("q_async", executor=Chancy.Executor.Async))
            await chancy.declare(Queue("q_thread", executor=Chancy.Executor.Threaded))
            await chancy.declare(Queue("q_process", concurrency=1))
            refs = [
                await chancy.push(f.job.with_kwargs(name="x"))
                for f in (hello_async, hello_thread, hello_process)
            ]
            async with Worker(chancy, register_signal_handlers=False):
                for ref in refs:
                    done = await chancy.wait_for_job(ref, timeout=60)
                    print(done.func, done.state, done.result, flush=True)
                    if done.errors:
                        print(done.errors, file=sys.stderr)
            await chancy.migrate(to_version=0)

    if __name__ == "__main__":
        asyncio.run(main())
    """
)


def test_jobs_in_the_worker_script_run_on_every_executor(
    tmp_path: Path, dsn: str, prefix: str
) -> None:
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHANCY_")}
    env["PYTHONPATH"] = str(ROOT)
    ran = subprocess.run(
        [sys.executable, str(script), dsn, prefix],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.splitlines() == [
        "__main__.hello_async succeeded async x",
        "__main__.hello_thread succeeded thread x",
        # The process child loaded the script (guarded part excluded) to find the job.
        "__main__.hello_process succeeded process x in True",
    ]


async def test_a_nested_job_runs_in_its_own_process_and_fails_clearly_elsewhere(
    dsn: str, prefix: str
) -> None:
    @job(queue="nested")
    async def inner(*, n: int) -> int:
        return n * 2

    assert inner.job.func.endswith(
        "test_a_nested_job_runs_in_its_own_process_and_fails_clearly_elsewhere.<locals>.inner"
    )
    async with Chancy(dsn, prefix=prefix) as chancy:
        await chancy.migrate()
        try:
            await chancy.declare(Queue("nested", executor=Chancy.Executor.Async))
            await chancy.declare(Queue("elsewhere", concurrency=1))
            ok = await chancy.push(inner.job.with_kwargs(n=21))
            # The same function on a process queue: the child cannot reach a nested function.
            lost = await chancy.push(inner.job.with_kwargs(n=1).with_queue("elsewhere"))
            async with Worker(chancy, register_signal_handlers=False):
                done = await chancy.wait_for_job(ok, timeout=30)
                failed = await chancy.wait_for_job(lost, timeout=60)
            assert done is not None and done.state == "succeeded" and done.result == 42
            assert failed is not None and failed.state == "failed"
            assert "defined inside another function" in failed.errors[-1]["traceback"]
        finally:
            await chancy.migrate(to_version=0)


def test_a_lambda_is_refused_at_decoration() -> None:
    with pytest.raises(ValueError, match="lambda"):
        job(lambda: None)
