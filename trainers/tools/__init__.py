"""One-off conversion tools (run with ``python -m trainers.tools.<name>``)."""
