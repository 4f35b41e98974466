"""Fixtures shared by the whole suite. Tests run against real PostgreSQL and Redis (see the README)."""

from __future__ import annotations

from typing import Any

import pytest

from cecilia.models import StaffRole
from tests import factories


@pytest.fixture
def clinic_a(db: Any) -> Any:
    return factories.clinic(name="Clínica A", slug="clinica-a")


@pytest.fixture
def clinic_b(db: Any) -> Any:
    return factories.clinic(name="Clínica B", slug="clinica-b")


@pytest.fixture
def receptionist_a(clinic_a: Any) -> Any:
    return factories.staff_user(clinic_a, role=StaffRole.RECEPTIONIST, username="recepcao_a")


@pytest.fixture
def manager_a(clinic_a: Any) -> Any:
    return factories.staff_user(clinic_a, role=StaffRole.MANAGER, username="gestao_a")
