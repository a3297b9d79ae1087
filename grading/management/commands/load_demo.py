from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from grading.demo import DEMO_PASSWORD, DEMO_USERS, load_demo
from rubrics import audit


class Command(audit.Command):
    help = "Load the demo project (clinical, legal, investment tasks) graded by the simulator."

    def add_arguments(self, parser):
        parser.add_argument("--simulator-url", default="http://127.0.0.1:8765/v1")

    def handle(self, *args, **options):
        try:
            result = load_demo(
                simulator_url=options["simulator_url"], out_dir=Path(settings.VAR_DIR) / "demo"
            )
        except ValidationError as exc:
            # Nothing is half-loaded (one transaction). The usual cause: the simulator is on
            # loopback and this server does not allow judges there.
            raise CommandError(f"The demo did not load: {' '.join(exc.messages)}") from None
        if result.created:
            self.stdout.write(
                f"Loaded the demo project '{result.project.name}' and queued {result.runs} "
                "grading runs on the simulated judge."
            )
        else:
            self.stdout.write(f"The demo project '{result.project.name}' is already loaded.")
        self.stdout.write(
            f"Users (password '{DEMO_PASSWORD}'): "
            + ", ".join(f"{u} ({r})" for u, r in DEMO_USERS.items())
        )
        self.stdout.write(f"A file to upload on the Responses page: {result.upload_file}")
