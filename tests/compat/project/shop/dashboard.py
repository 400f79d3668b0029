"""The shop's Django side: 0.26's unmanaged models over the Chancy tables, read by the ORM.

Django is configured here by code (a real project has a settings module) with the apps 0.26
documents: ``chancy.contrib.django``, ``chancy.plugins.cron.django`` and
``chancy.plugins.workflow.django``, and ``CHANCY_PREFIX`` for a non-default prefix.
"""

from psycopg.conninfo import conninfo_to_dict


def setup(dsn: str, prefix: str) -> None:
    import django
    from django.conf import settings

    params = conninfo_to_dict(dsn)
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": params.get("dbname", "postgres"),
                "USER": params.get("user", ""),
                "PASSWORD": params.get("password", ""),
                "HOST": params.get("host", ""),
                "PORT": params.get("port", ""),
            }
        },
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "chancy.contrib.django",
            "chancy.plugins.cron.django",
            "chancy.plugins.workflow.django",
        ],
        CHANCY_PREFIX=prefix,
        USE_TZ=True,
    )
    django.setup()


def overview(workflow_id: str) -> dict:
    """What the shop's back office shows, read through the ORM."""
    from chancy.contrib.django.models import Job, Queue
    from chancy.plugins.cron.django.models import Cron
    from chancy.plugins.workflow.django.models import Workflow

    charge = Job.objects.get(func="shop.jobs.charge_card")
    workflow = Workflow.objects.get(id=workflow_id)
    return {
        "charge": {"state": charge.state, "attempts": charge.attempts},
        "failed_payments": Job.objects.filter(queue="payments", state="failed").count(),
        "queues": sorted(
            Queue.objects.filter(name__in=["emails", "images", "payments"]).values_list(
                "name", flat=True
            )
        ),
        "cron": list(
            Cron.objects.filter(unique_key="nightly-export").values_list("cron", flat=True)
        ),
        "workflow": {
            "name": workflow.name,
            "state": workflow.state,
            "steps": sorted(workflow.steps.values_list("step_id", flat=True)),
        },
    }
