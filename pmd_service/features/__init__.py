"""One folder a feature (its endpoints, service, SQL, job and manifest); their list is
`registry.py`."""
