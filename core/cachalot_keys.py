"""cachalot's query key, refusing at once the queries it would not cache anyway.

cachalot builds a query's cache key (the whole SQL, compiled) before it looks at the query's tables;
for a query of a table it never caches (messages, chats, sessions: settings.CACHALOT_ONLY_CACHABLE_TABLES
leaves them out) that compilation is thrown away and the query compiled again to run it. That was a
fifth of the chat's JSON page (docs/performance.md). A table of the query's own FROM and joins that
is not in the list makes the query uncachable whatever else it reads, so it is refused here first;
every other query gets cachalot's own key and checks, unchanged.
"""

from cachalot.settings import cachalot_settings
from cachalot.utils import UncachableQuery, get_query_cache_key


def query_key(compiler):
    only = cachalot_settings.CACHALOT_ONLY_CACHABLE_TABLES
    if only:
        for join in compiler.query.alias_map.values():
            if join.table_name not in only:
                raise UncachableQuery
    return get_query_cache_key(compiler)
