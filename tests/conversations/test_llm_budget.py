"""The daily language model budget: every call counted once, whatever runs at the same time."""

from __future__ import annotations

import datetime
import threading

import pytest
from django.db import connection

from conversations.llm_budget import llm_budget_allows, llm_tokens_used, llm_usage_add
from conversations.models import LlmUsage

DAY = datetime.date(2026, 11, 23)


@pytest.mark.django_db
def test_usage_adds_up_per_clinic_and_day(clinic_a, clinic_b):
    assert llm_tokens_used(clinic=clinic_a, day=DAY) == 0
    llm_usage_add(clinic=clinic_a, day=DAY, prompt_tokens=1000, completion_tokens=200)
    llm_usage_add(clinic=clinic_a, day=DAY, prompt_tokens=500, completion_tokens=50)
    llm_usage_add(clinic=clinic_a, day=DAY + datetime.timedelta(days=1), prompt_tokens=7, completion_tokens=3)
    llm_usage_add(clinic=clinic_b, day=DAY, prompt_tokens=9999, completion_tokens=1)
    assert llm_tokens_used(clinic=clinic_a, day=DAY) == 1750
    assert llm_tokens_used(clinic=clinic_a, day=DAY + datetime.timedelta(days=1)) == 10
    usage = LlmUsage.objects.get(clinic=clinic_a, day=DAY)
    assert (usage.calls, usage.prompt_tokens, usage.completion_tokens) == (2, 1500, 250)


@pytest.mark.django_db
def test_a_negative_usage_report_counts_as_nothing(clinic_a):
    llm_usage_add(clinic=clinic_a, day=DAY, prompt_tokens=-5, completion_tokens=10)
    assert llm_tokens_used(clinic=clinic_a, day=DAY) == 10


@pytest.mark.django_db
def test_the_budget_allows_calls_until_it_is_spent_and_zero_means_never(clinic_a):
    clinic_a.llm_daily_token_budget = 1000
    assert llm_budget_allows(clinic=clinic_a, day=DAY)
    llm_usage_add(clinic=clinic_a, day=DAY, prompt_tokens=900, completion_tokens=99)
    assert llm_budget_allows(clinic=clinic_a, day=DAY)
    llm_usage_add(clinic=clinic_a, day=DAY, prompt_tokens=1, completion_tokens=0)
    assert not llm_budget_allows(clinic=clinic_a, day=DAY)
    assert llm_budget_allows(clinic=clinic_a, day=DAY + datetime.timedelta(days=1))  # a new day, a new budget
    clinic_a.llm_daily_token_budget = 0
    assert not llm_budget_allows(clinic=clinic_a, day=DAY + datetime.timedelta(days=1))


@pytest.mark.django_db(transaction=True)
def test_two_workers_adding_at_once_lose_nothing(clinic_a):
    # Each round is a new day, so both threads race to insert its first row as well as to increment it.
    rounds, workers = 15, 2
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for offset in range(rounds):
                barrier.wait(timeout=10)
                llm_usage_add(
                    clinic=clinic_a, day=DAY + datetime.timedelta(days=offset), prompt_tokens=100, completion_tokens=7
                )
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    rows = LlmUsage.objects.filter(clinic=clinic_a)
    assert rows.count() == rounds
    assert {(r.calls, r.prompt_tokens, r.completion_tokens) for r in rows} == {(workers, 200, 14)}
