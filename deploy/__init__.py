"""Workstation → Pi: `fab deploy` and friends. The root `fabfile.py` loads `ns` from here."""
from invoke import Collection

from deploy import ota_tasks, tasks

ns = Collection(tasks.deploy, tasks.rollback, tasks.status, tasks.logs, tasks.collect,
                ota_tasks.keygen, ota_tasks.publish, ota_tasks.fleet_status)
