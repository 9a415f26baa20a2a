"""Simulators and fakes for tests: the engine's own and those of DAG authors."""
