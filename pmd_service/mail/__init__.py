"""What every job kind's ready/failed email is made of: its blocks, its copy, its sending, once."""
