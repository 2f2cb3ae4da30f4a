"""The HTTP server: the aiohttp app with every feature's endpoints, its middleware, health,
the OpenAPI document and the dashboard page with its assets."""
