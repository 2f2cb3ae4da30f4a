"""What every claimed job shares: the job kind's protocol, and the one driver that runs it."""
