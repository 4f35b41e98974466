"""STUB — to be replaced: DRF exception handler producing {code, message, details, correlation_id}."""

from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    return drf_exception_handler(exc, context)
