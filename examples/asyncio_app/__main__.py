"""``python -m examples.asyncio_app``: run the example against ``$CHANCY_DSN``."""

import asyncio
import os

from examples.asyncio_app.app import main

results = asyncio.run(main(os.environ.get("CHANCY_DSN", "postgresql://localhost/postgres")))
for job_id, result in results.items():
    print(job_id, result)
