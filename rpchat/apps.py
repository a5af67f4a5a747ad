from django.apps import AppConfig
from django.db.backends.signals import connection_created


def _install_query_wrapper(sender, connection, **kwargs):
    from .metrics import query_wrapper

    # connection_created fires on every (re)connect of the same wrapper object: install once. First
    # in the list, because `connection.execute_wrapper()` pops the last one when its block ends and
    # a lazy connect may happen inside such a block.
    if query_wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, query_wrapper)


class RpchatConfig(AppConfig):
    name = "rpchat"
    verbose_name = "rpchat"

    def ready(self):
        connection_created.connect(_install_query_wrapper, dispatch_uid="rpchat-query-metrics")
