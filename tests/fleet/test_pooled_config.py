"""The pooled/listen_dsn settings, without a pooler: what each connection is opened with."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from chancy import Chancy
from chancy.errors import ConfigurationError

POOLER = "postgresql://app@pooler.example:6432/app"
DIRECT = "postgresql://app@db.example:5432/app"


def test_a_pooled_dsn_never_prepares_statements() -> None:
    assert Chancy(POOLER, pooled=True).db.connection_kwargs()["prepare_threshold"] is None
    assert "prepare_threshold" not in Chancy(DIRECT).db.connection_kwargs()


def test_sessions_use_the_listen_dsn_and_the_pool_never_gets_options() -> None:
    app = Chancy(POOLER, pooled=True, listen_dsn=DIRECT)
    pool = conninfo_to_dict(app.db.conninfo())
    session = conninfo_to_dict(app.db.session_conninfo())
    assert (pool["host"], pool["port"]) == ("pooler.example", "6432")
    assert "options" not in pool  # PgBouncer refuses the startup parameter
    assert (session["host"], session["port"]) == ("db.example", "5432")
    assert "tcp_keepalives_idle" in session["options"]
    # A Django DATABASES entry is accepted as well.
    django = {"NAME": "app", "USER": "app", "HOST": "db2.example", "PORT": 5433}
    session = conninfo_to_dict(Chancy(POOLER, pooled=True, listen_dsn=django).db.session_conninfo())
    assert (session["host"], session["port"]) == ("db2.example", "5433")


@pytest.mark.parametrize(
    ("options", "listening"),
    [
        ({}, True),
        ({"pooled": True}, False),
        ({"pooled": True, "listen_dsn": DIRECT}, True),
        ({"notifications": False, "listen_dsn": DIRECT}, False),
    ],
)
def test_who_listens(options: dict[str, object], listening: bool) -> None:
    assert Chancy(POOLER, **options).listening is listening  # type: ignore[arg-type]


async def test_no_listen_session_through_the_pooler() -> None:
    with pytest.raises(ConfigurationError, match="listen_dsn"):
        await Chancy(POOLER, pooled=True).notifier()


def test_the_dashboard_pool_inherits_the_settings() -> None:
    pytest.importorskip("starlette", reason="the dashboard needs the web extra (starlette)")
    from chancy.plugins.api.dashboard import _own_chancy

    own = _own_chancy(Chancy(POOLER, pooled=True, listen_dsn=DIRECT), 2)
    assert own.pooled and own.listen_dsn == Chancy(POOLER, listen_dsn=DIRECT).listen_dsn
    assert own.db.connection_kwargs()["prepare_threshold"] is None
