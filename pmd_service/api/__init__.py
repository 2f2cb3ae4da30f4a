"""What every feature's endpoints are built with, serving a ready ZIP included."""
