"""Workstation → Pi: `fab deploy` and friends. The root `fabfile.py` loads `ns` from here."""
from invoke import Collection

from deploy import tasks

ns = Collection(tasks.deploy, tasks.rollback, tasks.status, tasks.logs, tasks.collect)
