"""Fake ``google.colab.output``: enabling the custom widget manager is logged."""

from . import log


def enable_custom_widget_manager() -> None:
    log("enable_custom_widget_manager")
