"""The HTTP server: the app, its middleware, health, the OpenAPI document and the page."""
