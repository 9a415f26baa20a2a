"""State stores: the protocol, SQLite (the embedded default) and memory."""
