"""`device run`: live classification from a camera, with an HTTP page, JSON Lines and hot model reload."""

