"""What every feature's endpoints are built with: an endpoint declared once (route,
authentication, query, OpenAPI entry), Bearer and ticket authentication, parsing and answers,
and serving a ready ZIP."""
