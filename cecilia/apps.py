from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CeciliaConfig(AppConfig):
    name = "cecilia"
    verbose_name = _("Clinic")
