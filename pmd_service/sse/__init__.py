"""Live BDR, export and post changes over Server-Sent Events, relayed from one LISTEN connection
per process. It sits above the features: it streams their items."""
