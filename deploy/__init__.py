"""Workstation → Pi: `fab deploy` and friends. `fabric.yaml` (tasks.collection_name: deploy) loads `ns`."""
from invoke import Collection

from deploy import tasks

ns = Collection(tasks.deploy, tasks.rollback, tasks.status, tasks.logs)
