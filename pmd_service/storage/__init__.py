"""Where ready ZIPs are kept (the BDR_PATH folder or the BDR_STORE bucket) and what keeping them
may cost; serving them over HTTP is the api room's."""
