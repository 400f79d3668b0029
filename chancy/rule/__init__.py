"""Rules: predicates over the jobs table, compiled to SQL fragments whose values are parameters.

Plugins (Pruner, Reprioritize) and the dashboard's filters select jobs with rules, so this module is
the one place besides the ``.sql`` files that composes SQL. Column names and operators come from a
fixed whitelist through :mod:`psycopg.sql`; every value becomes a placeholder, never SQL text.

::

    rule = (JobRules.Age() > 86400) & JobRules.State().is_in(["succeeded", "failed"])
    where, params = compile_rule(rule, alias="j")
    query = sql.SQL("DELETE FROM {jobs} AS j WHERE {where}").format(
        jobs=sql.Identifier(f"{prefix}jobs"), where=where
    )
    await cursor.execute(query, params)
"""

from chancy.rule.core import (
    AndCondition,
    Condition,
    NotCondition,
    OrCondition,
    Params,
    Rule,
    SQLAble,
    compile_rule,
    compile_rule_named,
)
from chancy.rule.fields import JobRules, parse_filter
from chancy.rule.ops import MAX_FILTER_CONDITIONS, MAX_FILTER_DEPTH, InvalidRuleError, Op

__all__ = [
    "MAX_FILTER_CONDITIONS",
    "MAX_FILTER_DEPTH",
    "AndCondition",
    "Condition",
    "InvalidRuleError",
    "JobRules",
    "NotCondition",
    "Op",
    "OrCondition",
    "Params",
    "Rule",
    "SQLAble",
    "compile_rule",
    "compile_rule_named",
    "parse_filter",
]
