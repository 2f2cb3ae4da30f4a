"""Where ready ZIPs are kept (the ZIP_PATH folder or the ZIP_STORE bucket) and what keeping them
may cost; serving them over HTTP is the api room's."""
