"""arq jobs run by `worker.py`."""
