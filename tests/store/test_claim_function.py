"""The unlimited claim is the function claim_jobs (migration v0017): its SET list is a copy of
the claim_or_expire fragment the limited claims use, and must stay the same."""

from __future__ import annotations

import re
from importlib import resources

from chancy.store.loader import _fragments


def _normal(text: str) -> str:
    text = re.sub(r"--[^\n]*", "", text)
    return re.sub(r"\s+", " ", text).strip()


def test_claim_function_sets_what_the_limited_claims_set() -> None:
    fragment = _normal(_fragments()["{claim_or_expire}"]).replace("%(worker_id)s", "p_worker_id")
    migration = resources.files("chancy.migrations.core").joinpath("v0017.up.sql").read_text()
    body = _normal(migration)
    assert fragment.startswith("state = CASE"), fragment
    assert f"SET {fragment} WHERE j.id = ANY(ARRAY(SELECT id FROM picked))" in body, (
        "claim_jobs (migration v0017) and the claim_or_expire fragment differ: a change to one"
        " needs a new migration that replaces the function with the same SET list"
    )
