"""`scientist web`: a read-only, server-rendered browser of the archive.

Pages are rendered on the server (FastAPI + jinja2), charts are inline SVG and code is
highlighted with pygments, so there is no front-end build. The app only reads the archive
(GET only, and a read-only database connection), and never imports or runs candidate code:
drift heatmaps come from landscapes the sandbox computed, kept in an on-disk cache.
The application: `scientist.web.app.create_app`.
"""
