"""The HTTP server from a checkout: `python server.py`, as `python -m pmd_service serve`."""

from pmd_service.web.serve import main

if __name__ == "__main__":
    main()
