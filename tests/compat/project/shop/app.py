"""The shop's Chancy application, with 0.26's plugins configured for a short demo run."""

from chancy import Chancy
from chancy.plugins.cron import Cron
from chancy.plugins.leadership import Leadership
from chancy.plugins.metrics import Metrics
from chancy.plugins.pruner import Pruner
from chancy.plugins.recovery import Recovery
from chancy.plugins.trigger import Trigger
from chancy.plugins.workflow import WorkflowPlugin
from shop.plugins import AuditPlugin, ShopRetry


def make_chancy(dsn: str, prefix: str, audit: AuditPlugin) -> Chancy:
    return Chancy(
        dsn,
        prefix=prefix,
        max_connection_pool_size=6,
        plugins=[
            # Short intervals: the demo lasts seconds, not hours.
            Leadership(poll_interval=1, timeout=10),
            Recovery(poll_interval=5),
            Pruner(
                (Pruner.Rules.Queue() == "scratch") & (Pruner.Rules.Age() > 1),
                poll_interval=1,
            ),
            Metrics(sync_interval=1),
            WorkflowPlugin(polling_interval=2),
            Cron(poll_interval=1),
            ShopRetry(),
            Trigger(),
            audit,
        ],
    )
