"""The shop's worker process, as it runs in production: ``python -m shop.worker DSN PREFIX``.

It serves every queue until SIGTERM or SIGINT (Chancy's signal handlers stop it gracefully).
"""

import asyncio
import sys

from chancy import Worker
from shop.app import make_chancy
from shop.plugins import AuditPlugin


async def main(dsn: str, prefix: str) -> None:
    async with make_chancy(dsn, prefix, AuditPlugin()) as chancy:
        async with Worker(chancy, worker_id="shop-worker-2", tags={"role=shop"}) as worker:
            print("READY", flush=True)
            await worker.wait_for_shutdown()
    print("STOPPED", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
