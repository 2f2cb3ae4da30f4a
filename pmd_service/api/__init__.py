"""What every feature's endpoints.py is built with: an endpoint's declaration (declaration.py),
its registration and query parsing (routing.py), Bearer and ticket authentication (auth.py,
tickets.py), body and path parsing (validation.py), JSON and problem answers, the request id,
the app's typed keys, and serving a ready ZIP (zip_download.py)."""
