"""Runs: notebooks per dataset/profile (papermill) and training runs, harvested into results/."""

from rasr_lib.experiments.runner import NotebookError, list_notebooks, run_all, run_notebook

from rasr_lib.experiments.train_run import run_experiment

__all__ = ["NotebookError", "list_notebooks", "run_all", "run_experiment", "run_notebook"]
