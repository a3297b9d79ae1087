import os

# Each request is one thread of a threaded worker: numpy's BLAS must not start threads of its
# own per process, which spin on the other cores while the figures of one page are computed.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import gc  # noqa: E402
import sys  # noqa: E402

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.urls import get_resolver  # noqa: E402

# A thread back from PostgreSQL waits for the GIL while others compute; Python hands it over
# every 5 ms by default, so a page of ten queries could wait 50 ms on its own process. 1 ms
# keeps a page's waits near its own work.
sys.setswitchinterval(float(os.environ.get("ASSAY_GIL_SWITCH_MS", "1")) / 1000)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assay.settings")
application = get_wsgi_application()

# What a process holds once loaded (Django, DRF, every view module: some 265,000 objects) lives
# as long as the process, yet Python's full collections walked all of it: about 200 ms of CPU
# every hundred or so reward requests (2 ms a request on average), landing on whichever
# request (a trainer's, a page) allocated at that moment. Frozen here, collections walk only
# what requests made. The URLconf is imported first so that the views' modules are frozen too
# (gunicorn --preload: before the workers fork, which also keeps their pages shared).
get_resolver().url_patterns  # noqa: B018 - imports every view module now
gc.collect()
gc.freeze()
