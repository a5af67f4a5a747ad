from django.apps import AppConfig


class ToolsConfig(AppConfig):
    """Operational tooling: benchmark, stress test, load data, the tiny test model, query plans.

    Apart from request-serving code: it may import any app, and nothing but tests imports it.
    """

    name = "tools"
    verbose_name = "Tools"
