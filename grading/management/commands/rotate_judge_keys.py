from django.core.management.base import CommandError

from assay.secrets import SecretsUnavailable
from grading import services
from rubrics import audit


class Command(audit.Command):
    help = (
        "Re-encrypt every project judge key under the first key in ASSAY_SECRETS_KEY "
        "(put the new key first, keep the old one until this has run)."
    )

    def handle(self, *args, **options):
        try:
            count = services.judge_keys_rotate()
        except SecretsUnavailable as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{count} judge key(s) re-encrypted.")
