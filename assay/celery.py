import os
import sys
from pathlib import Path

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_init

if "celery" in Path(sys.argv[0]).parts:
    from assay import dotenv

    # The `celery` command (`celery -A assay worker`, as scripts/demo and the README run it)
    # reads the demo install's .env, as manage.py does; importing the app elsewhere (the web
    # server, pytest) does not.
    dotenv.load()
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


@worker_init.connect
def _hand_over_the_gil_sooner(**kwargs) -> None:
    """A judge reply that has come back waits for the GIL while other tasks of the process
    compute (their queries, their verdicts' inserts); Python hands it over every 5 ms by
    default, and every millisecond a reply waits is a millisecond its judge slot stays empty.
    As in assay/wsgi.py, ASSAY_GIL_SWITCH_MS (default 1) sets the interval."""
    sys.setswitchinterval(float(os.environ.get("ASSAY_GIL_SWITCH_MS", "1")) / 1000)
