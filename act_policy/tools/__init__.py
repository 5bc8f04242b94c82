"""Command-line tools (``act-policy <command>``); each module adds one sub-command."""
