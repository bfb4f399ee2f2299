"""Tasks: what "fit" means for each kind of input, registered by name (`config.task`)."""

from nfcore.errors import InputError
from nfcore.tasks.base import FitTask, PhaseProgress, Task
from nfcore.tasks.image import ImageTask
from nfcore.tasks.occupancy import OccupancyTask
from nfcore.tasks.sdf import SDFTask

TASK_TYPES: dict[str, type[FitTask]] = {task.name: task for task in (SDFTask, ImageTask, OccupancyTask)}


def task_type(name: str) -> type[FitTask]:
    """The task class registered as `name`.

    Raises:
        InputError: no task has that name.
    """
    try:
        return TASK_TYPES[name]
    except KeyError:
        raise InputError(f"unknown task {name!r}; known: {', '.join(TASK_TYPES)}") from None


__all__ = ["Task", "FitTask", "PhaseProgress", "TASK_TYPES", "task_type", "SDFTask", "ImageTask", "OccupancyTask"]
