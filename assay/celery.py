import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assay.settings")

app = Celery("assay")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(**kwargs) -> None:
    """Around each task, as Django does around each request: drop this thread's database
    connection if it is broken or older than CONN_MAX_AGE, and keep it otherwise."""
    from django.db import close_old_connections

    close_old_connections()
