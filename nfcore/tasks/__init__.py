"""Tasks: what "fit" means for each kind of input (the Task protocol in `base`)."""

from nfcore.tasks.base import Task
from nfcore.tasks.image import ImageTask, fit_image
from nfcore.tasks.occupancy import OccupancyTask, fit_occupancy
from nfcore.tasks.sdf import SDFTask, fit_sdf

__all__ = ["Task", "SDFTask", "fit_sdf", "ImageTask", "fit_image", "OccupancyTask", "fit_occupancy"]
