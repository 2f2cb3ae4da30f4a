"""Development only: embedded PostgreSQL and Redis, demo data, the one-command dev stack.

Production never imports it: the entry points and the page's dev routes import it inside their
dev-mode branches (PMD_DEV=1 or the `dev` command)."""
