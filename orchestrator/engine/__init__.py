"""The scheduler, the run executor and the attempt lifecycle."""
