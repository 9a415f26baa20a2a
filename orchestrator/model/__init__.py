"""The model: DAGs and jobs, their validation and loading, states, trigger rules, retries,
durations, tokens, and how a run ended. Pure: it imports nothing of the engine, the runtime,
the connectors, the store or the webhooks."""
