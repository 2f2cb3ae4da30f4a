"""Development only: embedded PostgreSQL and Redis, demo data, the one-command dev stack. Never imported in production."""
