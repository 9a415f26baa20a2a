"""The run host: what runs runs in a process (the command line now, the daemon next)."""
