import sys

from django.apps import AppConfig


class CollectstaticPlusConfig(AppConfig):
    name = "collectstatic_plus"
    verbose_name = "collectstatic-plus"

    def ready(self) -> None:
        from . import checks

        checks.register()
        checks.say_shadowed(sys.argv, sys.stderr)
