"""The HTTP server: the aiohttp app (app.py registers every feature's endpoints), its middleware
(connections, problems, CORS, metrics, outages), health, the OpenAPI document and the dashboard
page with its assets (static/)."""
