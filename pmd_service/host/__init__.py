"""The host site: its tokens, access rules, vault, schema check, cutover from its own PMD, and the grants a least-privilege role needs."""
