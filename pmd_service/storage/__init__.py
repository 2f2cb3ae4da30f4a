"""Where ready ZIPs are kept (the ZIP_PATH folder or the ZIP_STORE bucket) and what that costs."""
