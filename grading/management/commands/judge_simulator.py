"""Run the judge simulator: a real OpenAI-compatible HTTP server with deterministic verdicts."""

from __future__ import annotations

from django.core.management.base import CommandError

from grading.judges.simulator import FAULT_KINDS, SimulatorConfig, SimulatorServer
from rubrics import audit


class Command(audit.Command):
    help = (
        "Serve /v1/chat/completions with deterministic verdicts (see grading/judges/simulator.py "
        "for the rule), set latency and injected faults. GET /stats reports requests and the peak "
        "of concurrent requests."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--latency-ms", type=float, default=0.0)
        parser.add_argument("--fault-rate", type=float, default=0.0, help="0..1")
        parser.add_argument(
            "--faults",
            default=",".join(FAULT_KINDS),
            help=f"comma-separated kinds to draw from: {', '.join(FAULT_KINDS)}",
        )
        parser.add_argument("--retry-after", type=float, default=1.0, help="seconds, on 429")
        parser.add_argument("--timeout-s", type=float, default=30.0, help="delay of 'timeout'")
        parser.add_argument(
            "--max-concurrency", type=int, default=0, help="answer 429 above this (0: no cap)"
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--gullible",
            action="store_true",
            help="obey instructions found in the graded response (mark every criterion met), "
            "to show what prompt injection does to a judge that is fooled",
        )

    def handle(self, *args, **options):
        faults = tuple(f.strip() for f in options["faults"].split(",") if f.strip())
        unknown = set(faults) - set(FAULT_KINDS)
        if unknown:
            raise CommandError(f"--faults: unknown kind(s) {sorted(unknown)}; use {FAULT_KINDS}")
        if not 0 <= options["fault_rate"] <= 1:
            raise CommandError("--fault-rate must be between 0 and 1")
        config = SimulatorConfig(
            latency_ms=options["latency_ms"],
            fault_rate=options["fault_rate"],
            faults=faults,
            retry_after_s=options["retry_after"],
            timeout_s=options["timeout_s"],
            max_concurrency=options["max_concurrency"],
            seed=options["seed"],
            gullible=options["gullible"],
        )
        server = SimulatorServer(options["host"], options["port"], config)
        self.stdout.write(
            f"Judge simulator on {server.url} (latency {config.latency_ms:g} ms, "
            f"fault rate {config.fault_rate:g}"
            + ("; GULLIBLE: obeys instructions in responses" if config.gullible else "")
            + "). Verdicts are simulated. Ctrl-C stops it."
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            stats = server.stats.as_dict()
            self.stdout.write(
                f"Served {stats['requests']} requests; peak concurrency "
                f"{stats['peak_concurrency']}."
            )
            server.server_close()
