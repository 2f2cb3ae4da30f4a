"""Live events over Server-Sent Events, relayed from one LISTEN connection per process. It sits
below the features, which declare their kinds of event (sse/kinds.py); it imports none of them."""
