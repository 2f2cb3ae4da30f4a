"""Live BDR status over Server-Sent Events, relayed from one LISTEN connection per process."""
