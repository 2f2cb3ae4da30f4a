"""What every feature's endpoints are built with: declarations, authentication, parsing,
answers, and serving a ready ZIP."""
