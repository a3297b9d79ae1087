import os

# Each request is one thread of a threaded worker: numpy's BLAS must not start threads of its
# own per process, which spin on the other cores while the figures of one page are computed.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import sys  # noqa: E402

from django.core.wsgi import get_wsgi_application  # noqa: E402

# A thread back from PostgreSQL waits for the GIL while others compute; Python hands it over
# every 5 ms by default, so a page of ten queries could wait 50 ms on its own process. 1 ms
# keeps a page's waits near its own work.
sys.setswitchinterval(float(os.environ.get("ASSAY_GIL_SWITCH_MS", "1")) / 1000)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assay.settings")
application = get_wsgi_application()
