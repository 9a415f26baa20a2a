"""The daemon (``orchestrator serve``): its DAG folder, metrics, HTTP server and database lock.

Above the runtime and below the command line: the ``serve`` command assembles these parts.
"""
