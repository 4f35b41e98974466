"""Staff roles decide what a person may do; a clinic's secrets never leave the server in full."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.urls import reverse

from cecilia.models import Clinic, StaffMembership, StaffRole
from cecilia.roles import MANAGEMENT_GROUP, RECEPTION_GROUP
from cecilia.services import staff_membership_set
from tests import factories
from tests.admin_forms import changeform_data


@pytest.mark.django_db
def test_the_two_role_groups_exist_after_migrating():
    reception = Group.objects.get(name=RECEPTION_GROUP)
    management = Group.objects.get(name=MANAGEMENT_GROUP)
    reception_perms = set(reception.permissions.values_list("codename", flat=True))
    management_perms = set(management.permissions.values_list("codename", flat=True))
    assert {"add_appointment", "change_patient", "view_conversation"} <= reception_perms
    assert "change_clinic" not in reception_perms
    assert "delete_appointment" not in reception_perms | management_perms  # appointments are cancelled, not deleted
    assert {"change_clinic", "add_professional", "add_staffmembership"} <= management_perms


@pytest.mark.django_db
def test_a_membership_puts_the_user_in_the_role_group_and_removing_it_takes_them_out(clinic_a, clinic_b):
    user = factories.staff_user(clinic_a, role=StaffRole.RECEPTIONIST)
    assert list(user.groups.values_list("name", flat=True)) == [RECEPTION_GROUP]
    staff_membership_set(user_id=user.pk, clinic=clinic_b, role=StaffRole.MANAGER)
    assert set(user.groups.values_list("name", flat=True)) == {RECEPTION_GROUP, MANAGEMENT_GROUP}
    StaffMembership.objects.filter(user=user, clinic=clinic_a).delete()
    from cecilia.services import staff_access_sync

    staff_access_sync(user_id=user.pk)
    assert list(user.groups.values_list("name", flat=True)) == [MANAGEMENT_GROUP]


@pytest.mark.django_db
def test_a_new_membership_is_enough_for_a_plain_user_to_log_in_and_work(client, clinic_a):
    colleague = get_user_model().objects.create_user(username="nova", password="pw-for-tests-1234")
    assert not colleague.is_staff
    staff_membership_set(user_id=colleague.pk, clinic=clinic_a, role=StaffRole.RECEPTIONIST)
    colleague.refresh_from_db()
    assert colleague.is_staff
    client.force_login(colleague)
    assert client.get(reverse("admin:patients_patient_changelist")).status_code == 200


@pytest.mark.django_db
def test_secrets_are_encrypted_at_rest_and_never_rendered_back(client, manager_a, clinic_a):
    clinic_a.whatsapp_api_key = "evo-key-1234567890-SECRET"
    clinic_a.whatsapp_webhook_secret = "hook-secret-abcdefgh-XYZW"
    clinic_a.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT whatsapp_api_key FROM cecilia_clinic WHERE id = %s", [clinic_a.pk])
        stored = cursor.fetchone()[0]
    assert stored.startswith("fernet:") and "SECRET" not in stored
    assert Clinic.objects.get(pk=clinic_a.pk).whatsapp_api_key == "evo-key-1234567890-SECRET"

    client.force_login(manager_a)
    url = reverse("admin:cecilia_clinic_change", args=[clinic_a.pk])
    page = client.get(url).content.decode()
    assert "evo-key-1234567890" not in page and "hook-secret-abcdefgh" not in page
    assert "…XYZW" in page  # staff can tell which secret is set


@pytest.mark.django_db
def test_saving_the_clinic_with_blank_secret_fields_keeps_the_stored_secrets(client, manager_a, clinic_a):
    clinic_a.whatsapp_api_key = "evo-key-1234567890-SECRET"
    clinic_a.save()
    client.force_login(manager_a)
    url = reverse("admin:cecilia_clinic_change", args=[clinic_a.pk])
    response = client.get(url)
    data = changeform_data(
        response,
        skip=frozenset({"whatsapp_api_key", "whatsapp_webhook_secret", "whatsapp_verify_token", "clear_secrets"}),
    )
    data.update({"name": "Clínica A renomeada", "whatsapp_api_key": "", "whatsapp_webhook_secret": "novo-segredo-1"})
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    clinic_a.refresh_from_db()
    assert clinic_a.name == "Clínica A renomeada"
    assert clinic_a.whatsapp_api_key == "evo-key-1234567890-SECRET"
    assert clinic_a.whatsapp_webhook_secret == "novo-segredo-1"


@pytest.mark.django_db(transaction=True)
def test_the_role_groups_come_back_with_all_their_permissions_after_a_flush():
    from django.core.management import call_command

    before = set(Group.objects.get(name=MANAGEMENT_GROUP).permissions.values_list("codename", flat=True))
    call_command("flush", interactive=False, verbosity=0)
    after = set(Group.objects.get(name=MANAGEMENT_GROUP).permissions.values_list("codename", flat=True))
    assert after == before
    assert "view_inboundevent" in after  # a permission of the last app to migrate


@pytest.mark.django_db
def test_a_receptionist_reading_the_clinic_page_never_sees_its_secrets(client, receptionist_a, clinic_a):
    clinic_a.whatsapp_api_key = "EVOLUTION-INSTANCE-TOKEN-0001-ABCD"
    clinic_a.whatsapp_webhook_secret = "jwt-key-of-the-webhook-9999-WXYZ"
    clinic_a.whatsapp_verify_token = "meta-verify-token-5555"
    clinic_a.save()
    client.force_login(receptionist_a)
    page = client.get(reverse("admin:cecilia_clinic_change", args=[clinic_a.pk])).content.decode()
    for secret in ("EVOLUTION-INSTANCE-TOKEN-0001", "jwt-key-of-the-webhook-9999", "meta-verify-token"):
        assert secret not in page
    assert "…ABCD" in page and "…WXYZ" in page  # which secret is set is still visible


@pytest.mark.django_db
def test_pointing_the_channel_at_another_server_takes_typing_the_key_again(client, manager_a, clinic_a):
    clinic_a.whatsapp_provider = "evolution"
    clinic_a.whatsapp_api_url = "https://evolution.clinica-a.example"
    clinic_a.whatsapp_api_key = "EVOLUTION-INSTANCE-TOKEN-0001-ABCD"
    clinic_a.save()
    client.force_login(manager_a)
    url = reverse("admin:cecilia_clinic_change", args=[clinic_a.pk])
    secrets = frozenset({"whatsapp_api_key", "whatsapp_webhook_secret", "whatsapp_verify_token", "clear_secrets"})
    data = changeform_data(client.get(url), skip=secrets)
    data["whatsapp_api_url"] = "https://attacker.example"
    response = client.post(url, data)
    assert response.status_code == 200
    assert "whatsapp_api_key" in response.context["adminform"].form.errors
    clinic_a.refresh_from_db()
    assert clinic_a.whatsapp_api_url == "https://evolution.clinica-a.example"
    data["whatsapp_api_key"] = "EVOLUTION-INSTANCE-TOKEN-0002-EFGH"
    assert client.post(url, data).status_code == 302
    clinic_a.refresh_from_db()
    assert clinic_a.whatsapp_api_url == "https://attacker.example"


@pytest.fixture
def two_hats(clinic_a, clinic_b):
    """A person at the front desk of clinic A who manages clinic B; A has its own manager."""
    person = factories.staff_user(clinic_a, role=StaffRole.RECEPTIONIST, username="duas_clinicas")
    staff_membership_set(user_id=person.pk, clinic=clinic_b, role=StaffRole.MANAGER)
    boss_a = factories.staff_user(clinic_a, role=StaffRole.MANAGER, username="gestora_a")
    return person, boss_a


@pytest.mark.django_db
def test_managing_one_clinic_grants_nothing_extra_at_another(client, two_hats, clinic_a, clinic_b):
    person, boss_a = two_hats
    client.force_login(person)
    # Clinic B is theirs to manage.
    assert client.get(reverse("admin:cecilia_clinic_change", args=[clinic_b.pk])).context["has_change_permission"]
    # At clinic A they read the settings but cannot change them, nor anyone's role, nor delete patients.
    response = client.get(reverse("admin:cecilia_clinic_change", args=[clinic_a.pk]))
    assert response.status_code == 200 and not response.context["has_change_permission"]
    assert client.post(reverse("admin:cecilia_clinic_change", args=[clinic_a.pk]), {"name": "X"}).status_code == 403
    own_membership_a = StaffMembership.objects.get(user=person, clinic=clinic_a)
    boss_membership = StaffMembership.objects.get(user=boss_a, clinic=clinic_a)
    for membership in (own_membership_a, boss_membership):
        url = reverse("admin:cecilia_staffmembership_change", args=[membership.pk])
        assert client.post(url, {"user": membership.user_id, "clinic": clinic_a.pk, "role": "manager"}).status_code in (
            403,
            404,
        )
    assert StaffMembership.objects.get(pk=own_membership_a.pk).role == StaffRole.RECEPTIONIST
    assert StaffMembership.objects.get(pk=boss_membership.pk).role == StaffRole.MANAGER
    patient_a = factories.patient(clinic_a)
    response = client.post(reverse("admin:patients_patient_delete", args=[patient_a.pk]), {"post": "yes"})
    assert response.status_code == 403
    assert type(patient_a).objects.filter(pk=patient_a.pk).exists()
    # New rows of manager-only models can only be placed in clinic B.
    add_form = client.get(reverse("admin:scheduling_professional_add")).context["adminform"].form
    assert list(add_form.fields["clinic"].queryset) == [clinic_b]


@pytest.mark.django_db
def test_staff_of_several_clinics_see_only_their_clinics_in_filters(client, two_hats, clinic_a, clinic_b):
    person, _ = two_hats
    factories.clinic(name="Clínica Vizinha Z")
    client.force_login(person)
    page = client.get(reverse("admin:patients_patient_changelist")).content.decode()
    assert "Clínica A" in page and "Clínica B" in page
    assert "Clínica Vizinha Z" not in page


@pytest.mark.django_db
def test_changing_a_membership_to_another_person_updates_both_peoples_access(admin_client, clinic_a):
    first = factories.staff_user(clinic_a, role=StaffRole.MANAGER)
    second = get_user_model().objects.create_user(username="segunda", password="pw-for-tests-1234")
    membership = StaffMembership.objects.get(user=first)
    url = reverse("admin:cecilia_staffmembership_change", args=[membership.pk])
    response = admin_client.post(url, {"user": second.pk, "clinic": clinic_a.pk, "role": "manager"})
    assert response.status_code == 302
    assert list(second.groups.values_list("name", flat=True)) == [MANAGEMENT_GROUP]
    assert not first.groups.exists()
