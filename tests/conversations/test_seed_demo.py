import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from cecilia.models import Clinic
from patients.models import Patient
from scheduling.models import Appointment, Professional


@pytest.mark.django_db
def test_seed_demo_builds_a_working_clinic_and_running_it_again_changes_nothing(client):
    call_command("seed_demo", password="senha-de-teste-123")
    counts = (
        Clinic.objects.count(),
        Patient.objects.count(),
        Professional.objects.count(),
        Appointment.objects.count(),
    )
    clinic = Clinic.objects.get(slug="demo")
    assert 3 <= counts[2] <= 4
    assert counts[1] >= 20
    assert counts[3] >= 10
    assert all(a.start > clinic.local_now() for a in Appointment.objects.all())
    call_command("seed_demo", password="outra-senha-999")
    assert (
        Clinic.objects.count(),
        Patient.objects.count(),
        Professional.objects.count(),
        Appointment.objects.count(),
    ) == counts
    # The receptionist login works with the first password, and sees the clinic's patients.
    assert client.login(username="recepcao", password="senha-de-teste-123")
    page = client.get("/admin/patients/patient/").content.decode()
    assert "Maria Aparecida Silva" in page


@pytest.mark.django_db
def test_seed_demo_without_debug_never_uses_the_well_known_password(capsys):
    call_command("seed_demo")
    out = capsys.readouterr().out
    user = get_user_model().objects.get(username="recepcao")
    assert not user.check_password("cecilia-demo")
    password = out.rsplit(": ", 1)[1].strip()
    assert user.check_password(password)
