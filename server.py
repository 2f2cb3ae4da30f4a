"""Run the HTTP server from a checkout: `python server.py` (configuration from the
environment). The same as `python -m pmd_service serve`: pmd_service/web/serve.py."""

from pmd_service.web.serve import main

if __name__ == "__main__":
    main()
