"""The HTTP layer: the aiohttp app, its API endpoints, the dashboard page and its assets."""
