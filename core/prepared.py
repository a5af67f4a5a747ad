"""A hot query's SQL, compiled by the ORM once per database connection, then run with new parameters.

Building a queryset and compiling it to SQL is most of what the ORM costs on a small page: in the
API's chat page it was a fifth of the request (cProfile), more than the database's own time. A
`PreparedQuery` keeps what the ORM compiled for a queryset (its SQL, its constant parameters and
its column converters) and, on the next call, only fills in the new values:

    chat_ids = PreparedQuery(
        ChatSession, lambda *, user, code: ChatSession.objects.for_user(user).filter(code=code).values_list("pk")[:1]
    )
    chat_ids.rows(user=request.user.pk, code=code)  # [(42,)] or []

- `build(*shape, **params)` returns a `values_list()` queryset. `params` are the values that only
  fill placeholders (ints and UUIDs: ids, codes, cursors); whatever changes the SQL itself (a
  slice, an optional filter, which columns) goes in `shape`, part of the cache key.
- The first call with a shape compiles the queryset twice, with two sets of example values, and
  finds the placeholders each parameter fills by where the two differ; a parameter that changes the
  SQL text, or that the ORM turns into something other than its plain database value, raises
  `ImproperlyConfigured` there and then (the tests call every prepared query).
- Compiled once per connection object (connections belong to threads), so each thread's converters
  run with its own connection. Rows come back as tuples, converted as the ORM would (aware
  datetimes, UUIDs), from the database the router picks for reads of the model.
- Not for tables cachalot caches: the query goes to the database, as a raw query would, but
  without cachalot's search of raw SQL for writes (a prepared query only reads).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from itertools import chain, count

from cachalot.settings import cachalot_settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, router
from django.db.models.fields import AutoFieldMixin
from django.db.models.query import get_related_populators
from django.db.models.sql.subqueries import InsertQuery, UpdateQuery

_ATTRIBUTE = "_rpchat_prepared"
_serial = count()


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple
    slots: tuple[tuple[int, str], ...]  # (index in params, parameter name)
    compiler: object
    converters: dict


def _db_value(value, connection):
    """A parameter as the ORM writes it into a query's parameters for an integer or UUID column."""
    if isinstance(value, uuid.UUID):
        return value if connection.features.has_native_uuid_field else value.hex
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"A prepared query's parameters are ints or UUIDs, not {type(value).__name__}.")


def _examples(params: dict, offset: int) -> dict:
    """Values of the same types as `params`, unlike any a query holds otherwise. Positive and
    within a 32-bit column's range: the ORM drops a comparison with a value outside its column's
    range from the SQL (PostgreSQL's `integer` columns), which would leave no placeholder to fill."""
    examples = {}
    for position, (name, value) in enumerate(sorted(params.items())):
        if not isinstance(value, (int, uuid.UUID)) or isinstance(value, bool):
            raise TypeError(f"A prepared query's parameters are ints or UUIDs, not {type(value).__name__}.")
        serial = 2_013_000_000 + offset * 10_000 + position
        examples[name] = uuid.UUID(int=serial) if isinstance(value, uuid.UUID) else serial
    return examples


def _converted(compiled: _Compiled, rows: list) -> list:
    """Rows as the ORM converts them (aware datetimes, booleans, UUIDs)."""
    if not compiled.converters:
        return rows
    return [tuple(row) for row in compiled.compiler.apply_converters(rows, compiled.converters)]


class PreparedQuery:
    def __init__(self, model, build):
        self.model = model
        self.build = build
        self.name = getattr(build, "__qualname__", "query")
        self.key = next(_serial)

    def _compile(self, shape: tuple, params: dict, alias: str) -> _Compiled:
        connection = connections[alias]
        first, second = _examples(params, 1), _examples(params, 2)
        compiled = []
        for examples in (first, second):
            queryset = self.build(*shape, **examples)
            if queryset._prefetch_related_lookups or queryset._known_related_objects:
                raise ImproperlyConfigured(
                    f"{self.name}: prefetch_related() and related managers are not prepared."
                )
            compiler = queryset.query.get_compiler(using=alias)
            sql, query_params = compiler.as_sql()
            compiled.append((sql, tuple(query_params), compiler))
        (sql, one, compiler), (other_sql, two, _) = compiled
        if sql != other_sql or len(one) != len(two):
            raise ImproperlyConfigured(
                f"{self.name}: a parameter changes the SQL; make it part of the shape."
            )
        by_value = {_db_value(value, connection): name for name, value in first.items()}
        slots = []
        for index, (a, b) in enumerate(zip(one, two, strict=True)):
            if a == b:
                continue
            name = by_value.get(a)
            if name is None or b != _db_value(second[name], connection):
                raise ImproperlyConfigured(f"{self.name}: parameter {index} is not one of {sorted(params)}.")
            slots.append((index, name))
        converters = compiler.get_converters([column for column, _sql, _alias in compiler.select])
        return _Compiled(sql, one, tuple(slots), compiler, converters)

    def _run(self, shape: tuple, params: dict, *, convert: bool = True) -> tuple[_Compiled, list, str]:
        alias = router.db_for_read(self.model) or "default"
        connection = connections[alias]
        cache = connection.__dict__.setdefault(_ATTRIBUTE, {})
        key = (self.key, shape)
        compiled = cache.get(key)
        if compiled is None:
            compiled = cache[key] = self._compile(shape, params, alias)
        values = list(compiled.params)
        for index, name in compiled.slots:
            values[index] = _db_value(params[name], connection)
        # Marked as the ORM's own query, as cachalot marks what the compiler runs: otherwise its patch
        # of every cursor lowercases the SQL and searches it for UPDATE, INSERT... after each raw
        # execute, to drop what a raw write changed. That search is slow on a long SELECT (1.6 ms
        # for the chat page's, of 82 columns), and a prepared query only ever reads.
        raw = getattr(connection, "raw", True)
        connection.raw = False
        try:
            with connection.cursor() as cursor:
                cursor.execute(compiled.sql, values)
                rows = cursor.fetchall()
        finally:
            connection.raw = raw
        return compiled, _converted(compiled, rows) if convert else rows, alias

    def rows(self, *shape, **params) -> list[tuple]:
        """The query's rows for `params` (tuples, converted as the ORM converts them)."""
        return self._run(shape, params)[1]

    def raw_rows(self, *shape, **params) -> list[tuple]:
        """The query's rows for `params` as the database driver gives them, without the ORM's
        converters (no time zone put on datetimes, SQLite's 0/1 left as numbers): for values only
        compared or hashed, such as a page's keys in its ETag, where converting is wasted work."""
        return self._run(shape, params, convert=False)[1]

    def both(self, *shape, **params) -> tuple[list[tuple], list[tuple]]:
        """One read's rows twice: as the driver gave them (raw_rows) and converted (rows). For a page
        whose ETag must hash the very rows its body shows."""
        compiled, raw, _alias = self._run(shape, params, convert=False)
        return raw, _converted(compiled, raw)

    def instances(self, *shape, **params) -> list:
        """The query's model instances for `params`, with their select_related() rows attached and
        their deferred fields deferred, as iterating the queryset gives them (for a queryset that
        is not values()). Related managers' and prefetch_related() extras are not supported."""
        compiled, rows, alias = self._run(shape, params)
        compiler = compiled.compiler
        select, klass_info = compiler.select, compiler.klass_info
        model = klass_info["model"]
        start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        init_list = [column[0].target.attname for column in select[start:end]]
        populators = get_related_populators(klass_info, select, alias)
        instances = []
        for row in rows:
            instance = model.from_db(alias, init_list, row[start:end])
            for populator in populators:
                populator.populate(row, instance)
            for name, position in compiler.annotation_col_map.items():
                setattr(instance, name, row[position])
            instances.append(instance)
        return instances


def _set_examples(values: dict, offset: int) -> dict:
    """Example values for an UPDATE's new values: of the same types, unlike any a query holds."""
    examples = {}
    for position, (name, value) in enumerate(sorted(values.items())):
        serial = 2_013_500_000 + offset * 10_000 + position  # apart from the keys' (_examples)
        if isinstance(value, str):
            examples[name] = f"rpchat-prepared-{serial}"
        elif isinstance(value, int) and not isinstance(value, bool):
            examples[name] = serial
        elif isinstance(value, dt.datetime):
            examples[name] = dt.datetime(2001, 2, 3, 4, 5, 6, serial % 1_000_000, tzinfo=dt.UTC)
        else:
            raise TypeError(
                f"A prepared update's new values are str, int or datetime, not {type(value).__name__}."
            )
    return examples


@dataclass(frozen=True)
class _CompiledUpdate:
    sql: str
    params: tuple
    keys: tuple[tuple[int, str], ...]  # (index in params, key name): the WHERE's ints and UUIDs
    fields: tuple[tuple[int, str, object], ...]  # (index, value name, its field or None: a number)


class PreparedUpdate:
    """`queryset.update(**values)`, its SQL compiled by the ORM once per connection, then run with
    new values: an edit's versioned UPDATE took 0.6 ms through the ORM, 0.15 ms prepared.

        edit = PreparedUpdate(
            Message,
            lambda *, pk, version: Message.objects.filter(pk=pk, version=version),
            lambda *, content: {"content": content, "version": F("version") + 1},
        )
        edit.run(keys={"pk": 7, "version": 3}, values={"content": "Hello"})  # rows changed

    - `where(**keys)` gives the rows (keys are ints and UUIDs, as PreparedQuery's parameters), and
      `changes(**values)` the `update()` arguments: each a value passed in (str, int or datetime,
      prepared for the database by its field on every run, as `update()` does), a constant
      expression (`F("version") + 1`), or one with a number passed in (`F("count") + n`).
    - Like `update()`, it sends no signals and does not touch `auto_now` fields.
    - Not for tables cachalot caches (refused): they would keep results this UPDATE changed.
    """

    def __init__(self, model, where, changes):
        self.model = model
        self.where = where
        self.changes = changes
        self.name = getattr(where, "__qualname__", "update")
        self.key = next(_serial)

    def _compile(self, keys: dict, values: dict, alias: str) -> _CompiledUpdate:
        table = self.model._meta.db_table
        cachable = cachalot_settings.CACHALOT_ONLY_CACHABLE_TABLES
        if cachalot_settings.CACHALOT_ENABLED and (not cachable or table in cachable):
            raise ImproperlyConfigured(f"{self.name}: {table} is cached by cachalot; use update().")
        connection = connections[alias]
        compiled = []
        for offset in (1, 2):
            key_examples, value_examples = _examples(keys, offset), _set_examples(values, offset)
            query = self.where(**key_examples).query.chain(UpdateQuery)
            query.add_update_values(self.changes(**value_examples))
            sql, params = query.get_compiler(using=alias).as_sql()
            compiled.append((sql, tuple(params), key_examples, value_examples, query))
        (sql, one, key_one, value_one, query), (other_sql, two, key_two, value_two, _) = compiled
        if sql != other_sql or len(one) != len(two):
            raise ImproperlyConfigured(f"{self.name}: a parameter changes the SQL.")
        by_value = {_db_value(value, connection): ("key", name, None) for name, value in key_one.items()}
        for name, value in value_one.items():
            field = next((f for f, _model, new in query.values if new is value), None)
            if field is not None:
                by_value[field.get_db_prep_save(value, connection)] = ("value", name, field)
            elif isinstance(value, int):  # a number inside an expression: F("count") + n
                by_value[_db_value(value, connection)] = ("number", name, None)
            else:
                raise ImproperlyConfigured(
                    f"{self.name}: {name} is neither a field's new value nor a number."
                )
        key_slots, field_slots = [], []
        for index, (a, b) in enumerate(zip(one, two, strict=True)):
            if a == b:
                continue
            found = by_value.get(a)
            if found is None:
                raise ImproperlyConfigured(f"{self.name}: parameter {index} is none of the keys or values.")
            kind, name, field = found
            if kind == "key":
                expected = _db_value(key_two[name], connection)
            elif kind == "number":
                expected = _db_value(value_two[name], connection)
            else:
                expected = field.get_db_prep_save(value_two[name], connection)
            if b != expected:
                raise ImproperlyConfigured(f"{self.name}: parameter {index} is not {name} alone.")
            if kind == "key":
                key_slots.append((index, name))
            else:
                field_slots.append((index, name, field))
        if {name for _i, name in key_slots} != set(keys) or {name for _i, name, _f in field_slots} != set(
            values
        ):
            raise ImproperlyConfigured(f"{self.name}: a key or value is not a parameter of the SQL.")
        return _CompiledUpdate(sql, one, tuple(key_slots), tuple(field_slots))

    def run(self, *, keys: dict, values: dict) -> int:
        """Run the UPDATE; the number of rows it changed."""
        alias = router.db_for_write(self.model) or "default"
        connection = connections[alias]
        cache = connection.__dict__.setdefault(_ATTRIBUTE, {})
        compiled = cache.get(self.key)
        if compiled is None:
            compiled = cache[self.key] = self._compile(keys, values, alias)
        params = list(compiled.params)
        for index, name in compiled.keys:
            params[index] = _db_value(keys[name], connection)
        for index, name, field in compiled.fields:
            value = values[name]
            params[index] = (
                _db_value(value, connection) if field is None else field.get_db_prep_save(value, connection)
            )
        # Marked as the ORM's own query (see PreparedQuery._run): cachalot does not search it for
        # the tables it writes, which it caches none of (refused above).
        raw = getattr(connection, "raw", True)
        connection.raw = False
        try:
            with connection.cursor() as cursor:
                cursor.execute(compiled.sql, params)
                return cursor.rowcount
        finally:
            connection.raw = raw


@dataclass
class _CompiledInsert:
    sql: str
    fields: list
    placeholders: object  # the rows' placeholders, as the backend assembles them
    returning_params: tuple
    compiler: object


class PreparedInsert:
    """`bulk_create(objs)` of new rows, its SQL compiled by the ORM once per connection and number
    of rows, then run with the new rows' values. Under cProfile bulk_create() was half of a send's
    service time, most of it building the same INSERT again; without the profiler the prepared one
    saves about 0.05 ms a send (docs/performance.md).

        messages = PreparedInsert(Message)
        messages.create([question, reply])  # both get their ids, as from bulk_create()

    - Each value goes through its field as the ORM's INSERT puts it (`pre_save()`, so auto_now
      fields are set, then `get_db_prep_save()`), and the backend assembles the rows (PostgreSQL's
      UNNEST of columns included); should that give other placeholders than the compiled SQL has
      (an expression among the values), the SQL is compiled again for them.
    - Only where the database returns the new rows' ids from a multi-row INSERT (PostgreSQL, SQLite
      3.35 and later; `create()` returns False otherwise, having written nothing), for a model
      whose only returned column is its auto primary key, and for new rows without one.
    - Like bulk_create(), it sends no signals and calls no save().
    - Not for tables cachalot caches (refused): they would keep results this INSERT changed.
    """

    def __init__(self, model):
        self.model = model
        self.name = model._meta.label
        self.key = next(_serial)

    def _compile(self, objs: list, alias: str) -> tuple[_CompiledInsert, list]:
        opts = self.model._meta
        cachable = cachalot_settings.CACHALOT_ONLY_CACHABLE_TABLES
        if cachalot_settings.CACHALOT_ENABLED and (not cachable or opts.db_table in cachable):
            raise ImproperlyConfigured(
                f"{self.name}: {opts.db_table} is cached by cachalot; use bulk_create()."
            )
        if list(opts.db_returning_fields) != [opts.pk] or not isinstance(opts.pk, AutoFieldMixin):
            raise ImproperlyConfigured(f"{self.name}: only an auto primary key may be returned.")
        fields = [f for f in opts.concrete_fields if not f.generated and f is not opts.pk]
        query = InsertQuery(self.model)
        query.insert_values(fields, objs)
        compiler = query.get_compiler(using=alias)
        compiler.returning_fields = opts.db_returning_fields
        statements = compiler.as_sql()
        if len(statements) != 1:
            raise ImproperlyConfigured(f"{self.name}: the INSERT is not one statement on {alias}.")
        sql, params = statements[0]
        placeholders, rows = compiler.assemble_as_sql(fields, self._values(compiler, fields, objs))
        if len(params) != sum(len(row) for row in rows) + len(compiler.returning_params):
            raise ImproperlyConfigured(f"{self.name}: the INSERT's parameters are not its rows' values.")
        # The compiler is kept for its field preparation, which does not read the rows: let go of
        # the first INSERT's instances (a user's text) rather than hold them for the connection's life.
        query.objs = []
        compiled = _CompiledInsert(sql, fields, placeholders, tuple(compiler.returning_params), compiler)
        return compiled, rows

    @staticmethod
    def _values(compiler, fields: list, objs: list) -> list[list]:
        return [[compiler.prepare_value(f, compiler.pre_save_val(f, obj)) for f in fields] for obj in objs]

    def create(self, objs: list) -> bool:
        """INSERT the new rows `objs` in one statement and give each its id, as bulk_create() does.
        False, with nothing written, where the database cannot return the ids of several rows."""
        alias = router.db_for_write(self.model) or "default"
        connection = connections[alias]
        if not connection.features.can_return_rows_from_bulk_insert:
            return False
        if any(obj.pk is not None for obj in objs):
            raise ValueError(f"{self.name}: a prepared INSERT is for new rows, without ids.")
        for obj in objs:
            obj._prepare_related_fields_for_save(operation_name="bulk_create")
        cache = connection.__dict__.setdefault(_ATTRIBUTE, {})
        key = (self.key, len(objs))
        compiled = cache.get(key)
        if compiled is None:
            compiled, rows = self._compile(objs, alias)
            cache[key] = compiled
        else:
            compiler = compiled.compiler
            placeholders, rows = compiler.assemble_as_sql(
                compiled.fields, self._values(compiler, compiled.fields, objs)
            )
            if placeholders != compiled.placeholders:
                compiled, rows = self._compile(objs, alias)  # these values need other SQL: this once
        params = [*chain.from_iterable(rows), *compiled.returning_params]
        # Marked as the ORM's own query (see PreparedQuery._run): cachalot does not search it for
        # the tables it writes, which it caches none of (refused above).
        raw = getattr(connection, "raw", True)
        connection.raw = False
        try:
            with connection.cursor() as cursor:
                cursor.execute(compiled.sql, params)
                ids = connection.ops.fetch_returned_insert_rows(cursor)
        finally:
            connection.raw = raw
        if len(ids) != len(objs):
            raise RuntimeError(f"{self.name}: {len(objs)} rows inserted, {len(ids)} ids returned.")
        attname = self.model._meta.pk.attname
        for obj, (pk, *_rest) in zip(objs, ids, strict=True):
            setattr(obj, attname, pk)
            obj._state.adding = False
            obj._state.db = alias
        return True
