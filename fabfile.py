"""`fab` finds this file; the tasks live in deploy/ (fabric.yaml alone cannot point there: Fabric reads the
project's config only after it has found the collection)."""
from deploy import ns  # noqa: F401
