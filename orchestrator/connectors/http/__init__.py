"""The HTTP plumbing every remote connector shares: the client (retries, ``Retry-After``,
errors mapped once), the per-connection rate limiter, and the JSON paths of the ``http`` job
type."""
