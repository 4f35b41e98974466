from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConversationsConfig(AppConfig):
    name = "conversations"
    verbose_name = _("Conversations")

    def ready(self) -> None:
        from django.db.models.signals import m2m_changed, post_delete, post_save

        from cecilia.models import BusinessHours, Clinic
        from conversations.engines.context import clinic_info_forget_on_change
        from patients.models import HealthPlan
        from scheduling.models import Professional, Service

        # The engines' cached clinic facts are dropped as soon as what they are made of changes.
        for model in (Clinic, Service, Professional, BusinessHours, HealthPlan):
            for signal in (post_save, post_delete):
                signal.connect(clinic_info_forget_on_change, sender=model, dispatch_uid=f"clinic-info-{model.__name__}")
        for through in (Service.professionals.through, Service.accepted_health_plans.through):
            m2m_changed.connect(clinic_info_forget_on_change, sender=through, dispatch_uid=f"clinic-info-{through}")

        # A cancelled or moved appointment frees a slot for the waitlist (the module also holds its Celery task).
        from conversations.waitlist_offers import appointment_changed_offer_slot
        from scheduling.signals import appointment_changed

        appointment_changed.connect(appointment_changed_offer_slot, dispatch_uid="waitlist-offer-freed-slot")

        # Open live sockets are checked again when what their user may see changes.
        from django.contrib.auth import get_user_model

        from cecilia.models import StaffMembership
        from conversations.live import membership_changed, user_changed

        post_save.connect(membership_changed, sender=StaffMembership, dispatch_uid="live-access-membership-saved")
        post_delete.connect(membership_changed, sender=StaffMembership, dispatch_uid="live-access-membership-deleted")
        post_save.connect(user_changed, sender=get_user_model(), dispatch_uid="live-access-user")
