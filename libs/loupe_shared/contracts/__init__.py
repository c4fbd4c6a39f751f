"""Event contracts: subjects, streams and payload models every service agrees on."""
