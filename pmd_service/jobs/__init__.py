"""What every claimed job shares: the protocol a feature's job kind implements, and the one
driver that runs any kind from its claim to its email."""
