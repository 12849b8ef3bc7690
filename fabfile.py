"""`fab` run from the repository root finds this file; the tasks live in deploy/.

(A fabric.yaml cannot point there: Fabric reads project config only after it has found the collection.)
"""
import sys

from deploy import ns  # noqa: F401
from deploy.tasks import check_typed_hosts

check_typed_hosts(sys.argv)
