"""Django app for the Cron plugin's schedules: ``INSTALLED_APPS += ["chancy.plugins.cron.django"]``.

Chancy 0.26's app, label ``chancy_cron``: the ``Cron`` model over ``{CHANCY_PREFIX}cron`` and its
admin page, where schedules can be listed, added and edited (see :mod:`.models`).
"""
