"""The arq worker. worker.py wires it (its jobs, options and two entry points) and context.py
holds what its jobs share; bdr/ and exports/ build those two kinds of download, zip/ the ZIP
machinery both use, mail/ the emails, upkeep/ the sweep and the nightly cleanup."""
