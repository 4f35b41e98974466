"""Each clinic's daily language model budget: the calls and tokens it used per clinic-local day.

The LLM engine adds every call's usage with `llm_usage_add` (one atomic upsert, safe from any number of workers)
and asks `llm_budget_allows` before calling the model; past the budget the rule-based engine answers.
"""

from __future__ import annotations

import datetime

from django.db import connection

from cecilia.models import Clinic
from conversations.models import LlmUsage

# One statement: an insert for the day's first call, an increment for every later one (conflict on the
# llm_usage_one_per_clinic_day constraint's columns). The table is LlmUsage's.
_UPSERT_SQL = """
INSERT INTO conversations_llmusage AS usage (clinic_id, day, calls, prompt_tokens, completion_tokens)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (clinic_id, day) DO UPDATE SET
    calls = usage.calls + EXCLUDED.calls,
    prompt_tokens = usage.prompt_tokens + EXCLUDED.prompt_tokens,
    completion_tokens = usage.completion_tokens + EXCLUDED.completion_tokens
"""


def llm_usage_add(
    *, clinic: Clinic, day: datetime.date, prompt_tokens: int, completion_tokens: int, calls: int = 1
) -> None:
    """Count model calls (one by default; a turn adds its calls at once) and their tokens on the clinic's `day`
    (clinic-local).

    A single INSERT … ON CONFLICT DO UPDATE: two workers adding at once both land, neither overwrites the other.
    The day's row stays locked until the caller's transaction ends, so call it outside long transactions.
    Negative counts (a server's bad usage report) count as zero.
    """
    with connection.cursor() as cursor:
        cursor.execute(_UPSERT_SQL, [clinic.pk, day, max(calls, 0), max(prompt_tokens, 0), max(completion_tokens, 0)])


def llm_tokens_used(*, clinic: Clinic, day: datetime.date) -> int:
    """Prompt and completion tokens the clinic used on `day` (clinic-local); 0 when it made no call."""
    usage = LlmUsage.objects.filter(clinic=clinic, day=day).values_list("prompt_tokens", "completion_tokens").first()
    return sum(usage) if usage else 0


def llm_budget_allows(*, clinic: Clinic, day: datetime.date) -> bool:
    """Whether the clinic may still call the model on `day`: a budget of 0 means never."""
    budget = clinic.llm_daily_token_budget
    return budget > 0 and llm_tokens_used(clinic=clinic, day=day) < budget
