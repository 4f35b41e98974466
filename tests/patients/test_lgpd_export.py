"""The LGPD export: one ZIP with everything held about the patient, and nothing about anyone else."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.urls import reverse
from django.utils import translation

from cecilia.models import StaffRole
from patients.lgpd import patient_export
from patients.models import AccessKind, PatientAccess
from tests import factories


@pytest.fixture(autouse=True)
def english():
    # Field names in the export follow the active language (pt-BR for staff by default); the tests read English.
    with translation.override("en"):
        yield


@pytest.fixture
def seeded(settings, tmp_path, clinic_a, clinic_b):
    settings.MEDIA_ROOT = tmp_path / "media"
    return {
        "alfa": factories.lgpd_seeded_patient(clinic_a, tag="ALFA", phone="+5511987650001", cpf="52998224725"),
        "beta": factories.lgpd_seeded_patient(clinic_a, tag="BETA", phone="+5521987650002", cpf="11144477735"),
        "gama": factories.lgpd_seeded_patient(clinic_b, tag="GAMA", phone="+5531987650003"),
    }


def _unzip(content: bytes) -> tuple[dict, dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return json.loads(files["dados.json"]), files


def _all_bytes(files: dict[str, bytes]) -> str:
    return "\n".join(f"{name}\n{data.decode('utf-8', 'replace')}" for name, data in files.items())


@pytest.mark.django_db
def test_the_export_holds_every_value_of_the_patient(seeded, manager_a):
    alfa = seeded["alfa"]
    data, files = _unzip(patient_export(patient=alfa["patient"], requested_by=manager_a))

    everything = _all_bytes(files)
    for name, value in alfa["values"].items():
        if name not in {"digits", "national", "jid"}:  # stored as E.164 and the JID: checked below
            assert value in everything, name
    assert alfa["values"]["jid"] in json.dumps(data["profile"], ensure_ascii=False)
    assert data["profile"]["Birth date"] == "1987-03-14"
    [conversation] = data["conversations"]
    assert [m["Text"] for m in conversation["messages"]] == [m.text for m in alfa["messages"]]
    assert conversation["internal_notes"][0]["Note"] == "Ligar para Fulana ALFA"
    [appointment] = data["appointments"]
    assert appointment["Notes"] == "Alergia ALFA"
    answers = {step["Step"]: step["Patient's answer"] for step in appointment["reminders"]}
    assert answers == {"24h": "", "48h": "Vou sim ALFA"}
    assert data["waitlist"][0]["offers"][0]["Status"] == "Offered"
    assert data["privacy_notice_acknowledgements"][0]["Notice version"] == f"n{alfa['patient'].pk}"
    assert data["audit_trail"][0]["Before and after"]["email"][1] == "fulana.alfa@example.com"
    assert data["access_log"][0]["What"]


@pytest.mark.django_db
def test_the_export_includes_the_media_files_and_lists_them_with_type_size_and_date(seeded, manager_a):
    alfa = seeded["alfa"]
    data, files = _unzip(patient_export(patient=alfa["patient"], requested_by=manager_a))
    [media] = data["media"]
    assert media["type"] == "audio/ogg" and media["size_bytes"] == len(b"OGG ALFA")
    assert files[media["file"]] == b"OGG ALFA"
    assert media["date"].endswith("-03:00")  # the clinic's zone (São Paulo), not UTC


@pytest.mark.django_db
def test_the_export_holds_nothing_about_other_patients_of_the_same_or_another_clinic(seeded, manager_a):
    content = patient_export(patient=seeded["alfa"]["patient"], requested_by=manager_a)
    _, files = _unzip(content)
    everything = _all_bytes(files).lower()
    for other in ("beta", "gama"):
        for name, value in seeded[other]["values"].items():
            if value:
                assert str(value).lower() not in everything, (other, name)


@pytest.mark.django_db
def test_the_export_is_logged_as_an_export_access(seeded, manager_a):
    patient_export(patient=seeded["alfa"]["patient"], requested_by=manager_a)
    access = PatientAccess.objects.get(kind=AccessKind.EXPORT)
    assert (access.patient, access.user) == (seeded["alfa"]["patient"], manager_a)


@pytest.mark.django_db
def test_a_manager_downloads_the_export_from_the_patients_page(client, seeded, manager_a):
    patient = seeded["alfa"]["patient"]
    client.force_login(manager_a)
    page = client.get(reverse("admin:patients_patient_change", args=[patient.pk]))
    url = reverse("admin:patients_patient_export", args=[patient.pk])
    assert url in page.content.decode()
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert f"paciente-{patient.pk}-lgpd-" in response["Content-Disposition"]
    assert "ALFA" not in response["Content-Disposition"]
    data, _ = _unzip(response.content)
    assert "Fulana ALFA da Silva" in data["profile"].values()


@pytest.mark.django_db
def test_a_receptionist_sees_no_export_button_and_gets_403_on_the_url(client, seeded, receptionist_a):
    patient = seeded["alfa"]["patient"]
    client.force_login(receptionist_a)
    url = reverse("admin:patients_patient_export", args=[patient.pk])
    assert url not in client.get(reverse("admin:patients_patient_change", args=[patient.pk])).content.decode()
    assert client.get(url).status_code == 403
    assert not PatientAccess.objects.filter(kind=AccessKind.EXPORT).exists()


@pytest.mark.django_db
def test_a_manager_of_another_clinic_gets_404(client, seeded, clinic_b):
    other_manager = factories.staff_user(clinic_b, role=StaffRole.MANAGER)
    client.force_login(other_manager)
    response = client.get(reverse("admin:patients_patient_export", args=[seeded["alfa"]["patient"].pk]))
    assert response.status_code == 404
