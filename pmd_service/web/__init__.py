"""The dashboard page: static HTML, CSS and ES modules served by the same aiohttp app."""
