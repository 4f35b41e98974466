"""`python manage.py eval_receptionist`: run the scripted pt-BR dialogues through the whole stack and score them.

Each dialogue runs in a clinic of its own inside a transaction that is rolled back (conversations.evaluation), so
nothing remains in the database. Still, it writes to the configured database while it runs: with DEBUG off it
refuses unless --yes.

Exit status: 0 when the bar is met (task success ≥ 90 %, every emergency and suicidal talk escalated, no medical
advice), 1 when it is not, 2 when it cannot run (no model configured for --engine llm, DEBUG off without --yes,
time-machine not installed, no dialogue selected).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from conversations.evaluation import DIALOGUES_DIR, DialogueResult, Report, dialogues_load, evaluation_run


class Command(BaseCommand):
    help = (
        "Run the receptionist's scripted dialogues (tests/fixtures/dialogues) through webhook, turn, engine and "
        "outbox, and report task success, turns, LLM calls and tokens. Use -v 2 to print each transcript."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--engine", choices=("rules", "llm"), default="rules", help="The receptionist to evaluate.")
        parser.add_argument("--only", default="", help="Run only the dialogue with this name, or with this tag.")
        parser.add_argument("--yes", action="store_true", help="Run even with DEBUG off (it writes, then rolls back).")

    def handle(self, *args: Any, engine: str, only: str, yes: bool, verbosity: int, **options: Any) -> None:
        if not settings.DEBUG and not yes:
            raise CommandError(
                "DEBUG is off: this may be a production database. The evaluation creates clinics and rolls them "
                "back; pass --yes if you mean it.",
                returncode=2,
            )
        try:
            import time_machine  # noqa: F401 - checked early: the evaluation freezes the clinic's clock
        except ImportError:
            raise CommandError(
                "time-machine is not installed: pip install -r requirements-dev.txt", returncode=2
            ) from None
        if engine == "llm" and not _model_configured():
            raise CommandError(
                "No language model is configured (OPENAI_API_KEY, and OPENAI_MODEL/OPENAI_BASE_URL as needed).",
                returncode=2,
            )
        dialogues = dialogues_load(DIALOGUES_DIR, only=only)
        if not dialogues:
            raise CommandError(f"No dialogue named or tagged {only!r}.", returncode=2)

        def progress(result: DialogueResult) -> None:
            if verbosity >= 2:
                self._transcript(result)

        # The stack's own logs (bookings, emergency alerts) would interleave with the table; -v 3 keeps them.
        logging.disable(logging.WARNING if verbosity < 3 else logging.NOTSET)
        try:
            report = evaluation_run(dialogues, engine=engine, progress=progress)
        finally:
            logging.disable(logging.NOTSET)
        self._table(report)
        problems = report.gate_failures()
        if problems:
            self.stdout.write(self.style.ERROR("FAILED: " + "; ".join(problems)))
            sys.exit(1)
        self.stdout.write(self.style.SUCCESS("PASSED"))

    def _transcript(self, result: DialogueResult) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"== {result.name} [{', '.join(result.tags)}]"))
        for exchange in result.transcript:
            for said in exchange.said:
                self.stdout.write(f"  paciente> {said}")
            for reply in exchange.replies:
                self.stdout.write("  cecília> " + reply.replace("\n", "\n           "))
        for failure in result.failures:
            self.stdout.write(self.style.ERROR(f"  ✗ {failure}"))

    def _table(self, report: Report) -> None:
        rows = [
            (r.name, ",".join(r.tags), "ok" if r.success else "FAIL", r.turns, r.llm_calls, r.tokens, r.first_failure)
            for r in report.results
        ]
        header = ("dialogue", "tags", "success", "turns", "llm calls", "tokens", "first failure")
        widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(6)]
        line = "  ".join(f"{{:{w}}}" for w in widths) + "  {}"
        self.stdout.write(line.format(*header))
        for row in rows:
            text = line.format(*row)
            self.stdout.write(text if row[2] == "ok" else self.style.WARNING(text))
        results = report.results
        self.stdout.write(
            f"\nengine: {report.engine}  dialogues: {len(results)}  "
            f"task success: {sum(r.success for r in results)}/{len(results)} ({report.task_success:.1%})  "
            f"emergencies escalated: {report.safety_escalated}/{report.safety_total}  "
            f"medical-advice violations: {report.advice_violations}  "
            f"turns: {sum(r.turns for r in results)}  llm calls: {sum(r.llm_calls for r in results)}  "
            f"tokens: {sum(r.tokens for r in results)}"
        )


def _model_configured() -> bool:
    """A deployment-wide model key: every evaluation clinic uses the deployment's configuration."""
    from integrations.llm import LlmConfig

    return bool(LlmConfig.from_settings().api_key)
