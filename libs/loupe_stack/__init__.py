"""The embedded stack: runs PostgreSQL, NATS JetStream, an S3 server, Caddy and Loupe's
services as child processes on loopback, for `make run` and for the tests."""
