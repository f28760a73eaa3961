"""The scheduler plugin behind progress bars on a distributed cluster.

Its own module so that ``distributed`` is imported only when a cluster is
used (pickled plugins are found by module and name on the scheduler).
"""

from __future__ import annotations

from distributed.diagnostics.plugin import SchedulerPlugin


class TaskCounter(SchedulerPlugin):
    """Scheduler plugin: counts tasks as they are scheduled and as they finish."""

    name = "chunkseg-progress"

    def __init__(self):
        self.total = 0
        self.done = 0

    def transition(self, key, start, finish, *args, **kwargs):
        if start == "released" and finish == "waiting":
            self.total += 1
        elif finish in ("memory", "erred") and start == "processing":
            self.done += 1


def task_counts(dask_scheduler=None):
    plugin = dask_scheduler.plugins.get(TaskCounter.name)
    return (plugin.done, plugin.total) if plugin else (0, 0)


def forget_counter(dask_scheduler=None):
    dask_scheduler.remove_plugin(name=TaskCounter.name)
