from typing import Any

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CeciliaConfig(AppConfig):
    name = "cecilia"
    verbose_name = _("Clinic")

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        post_migrate.connect(_roles_sync, sender=self)


def _roles_sync(sender: AppConfig, **kwargs: Any) -> None:
    """After every migrate/flush: make sure all permissions exist, then give the role groups theirs.

    Our app migrates before the others, so their permissions may not exist yet when this signal reaches us.
    """
    from django.apps import apps
    from django.contrib.auth.management import create_permissions

    from cecilia.roles import roles_sync

    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=kwargs.get("using", "default"))
    roles_sync(apps)
