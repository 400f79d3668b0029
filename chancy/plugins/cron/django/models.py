"""The ``Cron`` model (Chancy 0.26's) over the Cron plugin's table, ``{CHANCY_PREFIX}cron``.

A schedule made here is the same row ``Cron.schedule`` makes. ``full_clean()`` (which the
admin runs) checks the expression, the time zone and the job; ``save()`` fills in what 0.26's
model left to the caller: the job's queue and unique key, and ``next_run`` when it is not
given (the expression's next fire time after the database's ``now()``). The admin also
recomputes ``next_run`` when the expression or the time zone changes, and tells the leader;
other writes through the ORM are seen at the plugin's ``poll_interval``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

__all__ = ("Cron",)

PREFIX = getattr(settings, "CHANCY_PREFIX", "chancy_")

# "localtime" is the host's own zone on some systems, not an IANA name every worker can load.
TIMEZONE_CHOICES = [(tz, tz) for tz in sorted(available_timezones() - {"localtime"})]


def database_now(using: str = "default") -> datetime:
    """The database's ``now()``: schedules are computed from database time, not the host's."""
    from chancy.contrib.django import django_cursor, get_chancy
    from chancy.plugins.cron import store

    app = get_chancy(using, prefix=PREFIX)
    with django_cursor(using) as cursor:
        row: Any = app.db.run_ex_sync(cursor, store.now(PREFIX))
    return row["now"]


class Cron(models.Model):
    unique_key = models.TextField(primary_key=True)
    job = models.JSONField()
    cron = models.TextField()
    timezone = models.TextField(default="Etc/UTC", choices=TIMEZONE_CHOICES)
    last_run = models.DateTimeField(null=True, blank=True)
    next_run = models.DateTimeField(null=True, blank=True)
    # chancy's columns: the job's queue (filled in from the job) and a pause.
    queue = models.TextField(blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = f"{PREFIX}cron"
        ordering = ["unique_key"]

    def __str__(self) -> str:
        return self.unique_key

    def clean(self) -> None:
        """Check the expression, time zone and job as ``Cron.schedule`` would."""
        from chancy.job import Job
        from chancy.plugins.cron.schedule import get_timezone, parse

        problems: dict[str, str] = {}
        try:
            parse(self.cron)
        except ValueError as exc:
            problems["cron"] = str(exc)
        try:
            get_timezone(self.timezone)
        except ValueError as exc:
            problems["timezone"] = str(exc)
        try:
            if not isinstance(self.job, dict):
                raise ValueError("the job must be a packed job: Job(...).pack()")
            job = Job.unpack({**self.job, "u": self.job.get("u") or self.unique_key})
            if job.unique_key != self.unique_key:
                raise ValueError(
                    f"the job's unique key {job.unique_key!r} differs from the schedule's"
                    f" {self.unique_key!r}; they must be the same"
                )
        except (ValueError, TypeError, KeyError) as exc:
            problems["job"] = f"{exc} (a packed job: Job(func=..., queue=...).pack())"
        if problems:
            raise ValidationError(problems)

    def save(self, *args: Any, **kwargs: Any) -> None:
        from chancy.plugins.cron.schedule import parse

        if isinstance(self.job, dict):
            self.job = {**self.job, "u": self.job.get("u") or self.unique_key}
            self.queue = str(self.job.get("q") or "default")  # the job decides its queue
        if self.next_run is None:
            using = kwargs.get("using") or "default"
            self.next_run = parse(self.cron).next_after(database_now(using), self.timezone)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            kwargs["update_fields"] = sorted({*update_fields, "job", "queue", "next_run"})
        super().save(*args, **kwargs)
