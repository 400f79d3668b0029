"""Run the Python blocks of one Markdown page in order, in one namespace and one event loop.

``python -m tests.docs.run_page PAGE``: blocks may use top-level ``await``. A block right
after a ``<!-- not-run: tests/... -->`` comment is skipped (it is a file of an example
project that the named test runs). Prints ``ran N blocks`` on success.
"""

from __future__ import annotations

import ast
import asyncio
import re
import sys
import types
from pathlib import Path

BLOCK = re.compile(r"(<!-- not-run: (?P<why>[^>]*?) -->\s*\n)?```python\n(?P<code>.*?)```", re.S)


def blocks(text: str) -> list[tuple[str | None, str, int]]:
    """(not-run reason or None, code, line number) of each Python block."""
    found = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start("code")) + 1
        found.append((match.group("why"), match.group("code"), line))
    return found


async def run(path: Path, text: str) -> int:
    # The namespace is a module's, registered as ``__docs__``, so a job function a page
    # defines has an import path (``__docs__.name``) that a worker in this process resolves.
    module = types.ModuleType("__docs__")
    sys.modules["__docs__"] = module
    namespace: dict[str, object] = module.__dict__
    ran = 0
    for why, code, line in blocks(text):
        if why is not None:
            continue
        compiled = compile(
            "\n" * (line - 1) + code, str(path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        result = eval(compiled, namespace)
        if asyncio.iscoroutine(result):
            await result
        ran += 1
    return ran


if __name__ == "__main__":
    page = Path(sys.argv[1])
    print(f"ran {asyncio.run(run(page, page.read_text()))} blocks")
