"""The service kit: settings, factories for PostgreSQL/NATS/S3, auth, logging, metrics,
problem+json errors and health checks."""
