"""One module per fab task's per-host job, each a `work` run inside `deploy.outline.host_job`."""
