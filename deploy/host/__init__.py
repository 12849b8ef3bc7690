"""Scripts `fab deploy` ships inside each release and runs on the host with its system Python (stdlib only)."""
