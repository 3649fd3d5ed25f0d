"""The typed job spec: what a user writes, checked at the boundary with errors that say where."""

from agentrft.spec.dataset import DatasetRow, load_dataset
from agentrft.spec.job import Hyperparameters, JobSpec, ToolDecl, load_job

__all__ = ["DatasetRow", "Hyperparameters", "JobSpec", "ToolDecl", "load_dataset", "load_job"]
