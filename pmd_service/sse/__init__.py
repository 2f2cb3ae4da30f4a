"""Live BDR and export status over Server-Sent Events, relayed from one LISTEN connection per
process: the hub (hub.py) and its lifetime in the app (lifetime.py), the stream's endpoints
(endpoints.py), its frames and replay. It sits above the features: it streams their items."""
