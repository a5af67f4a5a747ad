"""Background tasks (django-tasks, database backend): a worker (`manage.py db_worker`) runs them.

`make run` starts one worker beside the server; on PostgreSQL any number of workers share the
queue (docs/operations.md). A task that fails is recorded by the backend and never touches a reply.
"""

from __future__ import annotations

from django_tasks import task


@task(queue_name="memory")
def write_summaries(session_id: int) -> dict:
    """Write a chat's pending and stale memory summaries (chats.memory.write_summaries)."""
    from . import memory

    return memory.write_summaries(session_id)
