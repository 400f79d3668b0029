"""The plugins that ship with chancy.

Each plugin is a module (or package) of its own, imported only when used:

- ``chancy.plugins.leadership``: ``Leadership``, ``ImmediateLeadership`` and ``lease_params``,
  the fence every leader-only write carries;
- ``chancy.plugins.recovery``: ``Recovery`` (jobs of dead workers go back to the queue);
- ``chancy.plugins.pruner``: ``Pruner`` (finished jobs are deleted by a rule);
- ``chancy.plugins.retry``: ``RetryPlugin`` (exponential backoff with jitter);
- ``chancy.plugins.reprioritize``: ``Reprioritize`` (waiting jobs gain priority by a rule);
- ``chancy.plugins.sentry``: ``SentryPlugin`` (job exceptions reported to Sentry).

Their SQL lives in ``chancy/plugins/sql/*.sql`` as named queries, run through
``chancy.plugins.store`` (one function per query).
"""
