"""CLI command groups, registered on the app in scientist/cli.py."""
