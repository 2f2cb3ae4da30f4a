"""Where ready ZIPs are kept and what keeping them may cost: the BDR_PATH folder or the
BDR_STORE bucket (zip_files.py), the size and disk budget (budget.py), and removing objects
nothing refers to (object_tidy.py). Serving them over HTTP is api/zip_download.py."""
