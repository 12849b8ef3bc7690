"""`device agent`: the pull side of over-the-air updates. Polls a signed channel manifest from any web server,
S3 bucket or CDN, downloads only what the device lacks, and installs it with the release's own host-side
install path (the one `fab deploy` runs over SSH). Imports neither `deploy` nor `trainer`."""
